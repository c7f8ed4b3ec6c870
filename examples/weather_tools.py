"""Tools of the README's tracing and report examples: `--tools examples/weather_tools.py`."""

from keye_agent.tools import tool

WEATHER = {"Oslo": "4 C, rain", "Rome": "18 C, sun", "Paris": "11 C, clouds"}


@tool
def get_weather(city: str) -> str:
    """The current weather of a city.

    Args:
        city: The city's name, e.g. "Paris".
    """
    if city not in WEATHER:
        raise ValueError(f"unknown city {city!r}; known cities: {', '.join(sorted(WEATHER))}")
    return WEATHER[city]
