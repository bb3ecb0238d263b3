"""Location CSV files: checked whole, one error line naming the bad row."""

from pathlib import Path

import pytest

from shopfloor.aggregation.locations_csv import parse_locations, read_locations_csv
from shopfloor.errors import ShopfloorError

HEADER = "loc_id,name,temperature_min,temperature_max,active"


def test_the_shipped_example_is_valid_and_covers_the_demo_locations():
    shipped = Path(__file__).parents[2] / "config" / "locations.csv"
    parsed = read_locations_csv(shipped)
    assert [r["loc_id"] for r in parsed.rows] == ["L001", "L002", "L003", "L004", "L005"]
    assert all(r["active"] for r in parsed.rows)
    assert parsed.rows[3]["pcv_temperature_max"] is None  # an empty cell is no limit


def test_comments_blank_cells_and_defaults():
    parsed = parse_locations(f"# comment\n{HEADER}\nA, oven ,10,,\n\nB,,, 40 ,no\n")
    assert parsed.columns == ("loc_id", "name", "temperature_min", "temperature_max", "active")
    assert parsed.rows == [
        {"loc_id": "A", "name": "oven", "temperature_min": 10.0, "temperature_max": None,
         "active": True},
        {"loc_id": "B", "name": None, "temperature_min": None, "temperature_max": 40.0,
         "active": False},
    ]


def test_active_defaults_to_true_when_the_column_is_absent():
    parsed = parse_locations("loc_id,site\nA,P1\n")
    assert parsed.columns == ("loc_id", "site", "active")
    assert parsed.rows == [{"loc_id": "A", "site": "P1", "active": True}]


@pytest.mark.parametrize(("text", "message"), [
    (f"{HEADER}\nA,oven,30,20,yes\n",
     "x.csv line 2 (loc_id 'A'): temperature_min 30 is above temperature_max 20"),
    (f"# c\n{HEADER}\nA,oven,1,2,yes\nB,x,warm,2,yes\n",
     "x.csv line 4 (loc_id 'B'): temperature_min 'warm' is not a number"),
    (f"{HEADER}\nA,oven,1,2,maybe\n", "x.csv line 2 (loc_id 'A'): active 'maybe' is not"),
    (f"{HEADER}\nA,oven,1,2\n", "x.csv line 2: 4 cells, the header has 5 columns"),
    (f"{HEADER}\nA,a,,,\nA,b,,,\n", "x.csv line 3 (loc_id 'A'): loc_id also on line 2"),
    (f"{HEADER}\nline 1,a,,,\n", "loc_id 'line 1' must be 1-32 characters without spaces"),
    (f"{HEADER}\nA,a,nan,,\n", "temperature_min 'nan' is not a finite number"),
    ("loc_id,colour\nA,red\n", "x.csv line 1: unknown column(s) ['colour']"),
    ("name\noven\n", "x.csv line 1: the header has no loc_id column"),
    (f"{HEADER}\n", "x.csv: no location rows below the header"),
    ("# only a comment\n", "x.csv: no header row"),
])
def test_a_bad_file_is_one_error_line_naming_the_row(text, message):
    with pytest.raises(ShopfloorError) as err:
        parse_locations(text, "x.csv")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_one_error_line(tmp_path):
    with pytest.raises(ShopfloorError, match="cannot read nope.csv"):
        read_locations_csv(tmp_path / "nope.csv")
