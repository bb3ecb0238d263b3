"""Database URLs: parsing, the query-string password, what may be shown."""

import pytest

from shopfloor.db.urls import display_url, parse_database_url
from shopfloor.errors import ShopfloorError


def test_a_query_string_password_moves_into_the_password():
    u = parse_database_url("postgresql+psycopg2://u@h/db?password=s3cr3t&sslmode=require")
    assert u.password == "s3cr3t" and dict(u.query) == {"sslmode": "require"}
    assert display_url(u) == "postgresql+psycopg2://u:***@h/db?sslmode=***"


def test_the_same_password_twice_is_accepted_and_two_different_are_refused():
    assert parse_database_url("mysql+pymysql://u:p@h/db?passwd=p").password == "p"
    with pytest.raises(ShopfloorError, match="two different passwords"):
        parse_database_url("postgresql://u:one@h/db?password=two")


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://u:x@h:abc/db", "invalid database URL: the port must be a number"),
    ("not a url", "invalid database URL: expected driver://"),
    ("postgresql+nosuchdriver://u@h/db", r"unknown database driver 'postgresql\+nosuchdriver'"),
    ("postgresql://u@h/db?sslpassword=x", r"secret in its query string \(sslpassword\)"),
])
def test_bad_urls_are_one_clear_line_without_the_url(url, message):
    with pytest.raises(ShopfloorError, match=message) as info:
        parse_database_url(url)
    assert "\n" not in str(info.value) and "x@h" not in str(info.value)


def test_display_url_hides_the_password_and_every_query_value():
    assert display_url("sqlite:///x.db") == "sqlite:///x.db"
    assert display_url("mssql+pymssql://sa:pw@db:1433/plant?charset=utf8") == (
        "mssql+pymssql://sa:***@db:1433/plant?charset=***")
