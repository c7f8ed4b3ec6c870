"""Every broken registry file in broken_yaml/ fails with its own specific error, at the right file:line:column.

Each row: the file, a pattern its message must match, and where the error must point (line, column, and the
file when it is an included one). ``validate_registry_file`` reports the same problem as text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keye_agent.errors import ConfigError
from keye_agent.tools.yaml_registry import load_registry, validate_registry_file

HERE = Path(__file__).parent / "broken_yaml"
ENV = {"STORE_API_URL": "http://127.0.0.1:8765"}

CASES: dict[str, tuple[str, int, int] | tuple[str, int, int, str]] = {
    "01_yaml_syntax.yaml": (r"YAML syntax error: .*(expected <block end>|did not find expected '-')", 9, 4),
    "02_tab_indent.yaml": (r"YAML syntax error: .*('\\t'|tab character)", 8, 1),
    "03_unclosed_quote.yaml": (r"YAML syntax error: .*quoted scalar.*end of stream", 10, 1),
    "04_top_level_list.yaml": (r"the top level is a list; expected a mapping with a 'tools' list", 1, 1),
    "05_empty.yaml": (r"the file is empty", 1, 1),
    "06_typo_top_key.yaml": (r"unknown key 'tool' in the top level.*did you mean 'tools'\?", 2, 1),
    "07_typo_tool_key.yaml": (r"unknown key 'methd' in tools\[0\].*did you mean 'method'\?", 8, 5),
    "08_missing_kind.yaml": (r"tools\[0\] is missing the required key 'kind'", 5, 5),
    "09_unknown_kind.yaml": (r"tools\[0\]\.kind is 'htp'; expected one of: http, python, builtin, openapi.*'http'", 6, 11),
    "10_missing_name.yaml": (r"tools\[0\] is missing the required key 'name'", 5, 5),
    "11_bad_tool_name.yaml": (r"tools\[0\]\.name is 'find stores'; expected a string matching", 5, 11),
    "12_no_url_or_path.yaml": (r"needs exactly one of 'url' .* or 'path'", 5, 5),
    "13_url_and_path.yaml": (r"needs exactly one of 'url' .* or 'path'", 5, 5),
    "14_bad_method.yaml": (r"tools\[0\]\.method is 'FETCH'; expected one of: GET", 8, 13),
    "15_undeclared_path_param.yaml": (r"the URL has \{store_id\} but no path argument 'store_id' is declared", 8, 11),
    "16_path_arg_not_in_template.yaml": (r"argument 'store_id' is declared in: path but the URL has no \{store_id\}",
                                         10, 59),
    "17_bad_argument_location.yaml": (r"arguments\.near\.in is 'cookie'; expected one of: path, query, header, body",
                                      10, 52),
    "18_bad_argument_type.yaml": (r"arguments\.near\.type is 'strng'.*did you mean 'string'\?", 10, 20),
    "19_negative_timeout.yaml": (r"tools\[0\]\.timeout_s: -1 is less than or equal to the minimum of 0", 9, 16),
    "20_retries_string.yaml": (r"tools\[0\]\.retries is str 'three'; expected an integer", 9, 14),
    "21_missing_env.yaml": (r"environment variable KEYE_TEST_UNSET_URL is not set.*\$\{KEYE_TEST_UNSET_URL:-value\}",
                            4, 13),
    "22_malformed_env.yaml": (r"malformed variable reference '\$\{1BAD\}'", 3, 13),
    "23_unclosed_env.yaml": (r"unclosed variable reference", 3, 13),
    "24_include_missing.yaml": (r"included file 'parts/not_there.yaml' not found", 4, 5),
    "25_include_cycle.yaml": (r"include cycle: .*25_include_cycle.yaml -> .*cycle_b.yaml -> .*25_include_cycle.yaml",
                              2, 11, "parts/cycle_b.yaml"),
    "26_duplicate_tool.yaml": (r"duplicate tool name 'find_stores'; first defined at .*parts/one_tool.yaml:5", 6, 11),
    "27_duplicate_key.yaml": (r"duplicate key 'description' \(first at line 7\)", 9, 5),
    "28_bad_jsonpath.yaml": (r"bad response\.select .*a filter looks like", 10, 15),
    "29_select_without_dollar.yaml": (r"response\.select is 'stores\[0\]\.id'; expected a JSONPath starting with '\$'",
                                      9, 24),
    "30_python_module_missing.yaml": (r"cannot import module 'keye_no_such_module'", 4, 15),
    "31_python_attr_typo.yaml": (r"has no attribute 'haversine_kn'.*did you mean "
                                 r"keye_agent\.tau\.domains\.store\.api\.data:haversine_km", 4, 15),
    "32_python_undocumented.yaml": (r"argument 'lat1' has no description", 4, 15),
    "33_python_bad_reference.yaml": (r"tools\[0\]\.function is 'road_km'; expected a string matching", 4, 15),
    "34_builtin_unknown.yaml": (r"no built-in tool named 'keye_no_such_builtin'", 4, 14),
    "35_openapi_missing_file.yaml": (r"cannot read OpenAPI document .*no_such_openapi\.json", 5, 11),
    "36_openapi_unknown_operation.yaml": (r"operation 'getStor' is not in the document; did you mean 'getStore'\?", 7, 17),
    "37_auth_env_missing.yaml": (r"auth needs the environment variable KEYE_TEST_UNSET_TOKEN, which is not set", 9, 11),
    "38_auth_unknown_type.yaml": (r"auth\.type is 'basic'; expected one of: bearer, api_key, none", 9, 18),
    "39_auth_missing_token_env.yaml": (r"tools\[0\]\.auth is missing the required key 'token_env'", 10, 7),
    "40_no_base_url.yaml": (r"tool 'find_stores' has a relative path but no base_url", 6, 11),
    "41_loopback_not_allowed.yaml": (r"refused .*host '127\.0\.0\.1' is a loopback address.*allow_loopback", 7, 11),
    "42_unsupported_version.yaml": (r"version is 2; expected 1", 1, 10),
    "43_network_not_boolean.yaml": (r"network\.allow_loopback is str 'yes please'; expected a boolean", 3, 19),
    "44_relative_url.yaml": (r"'stores/list' is not an absolute http\(s\) URL", 8, 10),
    "45_ftp_url.yaml": (r"'ftp://127\.0\.0\.1/stores' is not an absolute http\(s\) URL", 8, 10),
    "46_argument_key_typo.yaml": (r"unknown key 'descripton' in tools\[0\]\.arguments\.near.*did you mean 'description'",
                                  10, 28),
    "47_tools_not_a_list.yaml": (r"tools is dict .*; expected an array", 3, 3),
    "48_hex_loopback_refused.yaml": (r"host '0x7f\.1' \(= 127\.0\.0\.1\) is a loopback address", 6, 10),
    "49_openapi_no_operations.yaml": (r"tools\[0\]\.operations: \[\] should be non-empty", 5, 17),
    # issue 24 items 5 and 6: inputs that exploded, were read without a line, or were accepted
    "50_alias_bomb.yaml": (r"aliases expand to more than 100,000 nodes .*\*e.*alias bomb", 7, 8),
    "51_not_utf8.yaml": (r"byte 0xe9 is not UTF-8.*save the file as UTF-8", 5, 21),
    "52_items_type_typo.yaml": (r"not a valid JSON Schema: 'strng' .*did you mean 'string'\?", 10, 64),
    "53_default_wrong_type.yaml": (r"argument 'limit' has default 'ten': 'ten' is not of type 'integer'.*an integer",
                                   10, 66),
    "54_default_outside_enum.yaml": (r"argument 'sort' has default 'price': not one of its enum values.*add 'price'",
                                     10, 77),
    "55_minimum_over_maximum.yaml": (r"argument 'limit' has minimum: 10 and maximum: 1, so no value fits.*swap", 10, 66),
    "56_timeout_nan.yaml": (r"\.nan is not a finite number", 9, 16),
    "57_builtin_bad_option.yaml": (r"built-in tool 'fetch_url': bad option\(s\): max_chars: .*valid integer.*its options",
                                   4, 14),
    "58_two_documents.yaml": (r"more than one YAML document", 9, 1),
    "59_unknown_alias.yaml": (r"the alias \*shared_args names no anchor", 9, 16),
}


def test_every_broken_file_has_a_case() -> None:
    files = {p.name for p in HERE.glob("*.yaml")}
    assert files == set(CASES), sorted(files ^ set(CASES))
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE.parent)  # relative paths in messages are independent of where pytest runs
    pattern, line, column, *rest = CASES[name]
    path = HERE / name
    with pytest.raises(ConfigError) as ei:
        load_registry(path, env=ENV)
    err = ei.value
    assert re.search(pattern, str(err)), str(err)
    expected_file = (HERE / rest[0]) if rest else path
    assert Path(err.file or "").resolve() == expected_file.resolve(), err.file
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"{err.file}:{line}:{column}: ")
    problems = validate_registry_file(path, env=ENV)
    assert problems and re.search(pattern, problems[0]), problems
