"""Tools of the report tests (`--tools tests/report/report_tools.py`): a weather table, and a note whose text is
markup that would run in the page if the report did not escape it."""

import os

from keye_agent.tools import tool

WEATHER = {"Oslo": "4 C, rain", "Rome": "18 C, sun"}
XSS = ("<script>document.documentElement.setAttribute('data-pwned', 'script')</script>"
       "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\">")


@tool
def get_weather(city: str) -> str:
    """The current weather of a city.

    Args:
        city: The city's name.
    """
    if city not in WEATHER:
        raise ValueError(f"unknown city {city!r}; known cities: {', '.join(sorted(WEATHER))}")
    return WEATHER[city]


@tool
def read_note(name: str) -> str:
    """A note's text.

    Args:
        name: The note's name.
    """
    return f"note {name}: {XSS} token={os.environ.get('KEYE_REPORT_TEST_API_KEY', '')}"
