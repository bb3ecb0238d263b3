import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.identifiers import check_identifier, check_optional_identifier


@pytest.mark.parametrize("name", ["flet_montrg", "sqlt_data_1_2026_01", "_x", "A1"])
def test_plain_names_pass_unchanged(name):
    assert check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1abc", "a-b", "a b", 'x"; DROP TABLE t; --', "t;", "a.b", "x" * 64, "é"],
)
def test_anything_that_could_break_out_of_an_identifier_is_rejected(name):
    with pytest.raises(ShopfloorError, match="invalid schema"):
        check_identifier(name, "schema")


def test_optional_identifier_treats_empty_as_none():
    assert check_optional_identifier("", "schema") is None
    assert check_optional_identifier(None, "schema") is None
    assert check_optional_identifier("s1", "schema") == "s1"
