"""Names Kubernetes accepts (apimachinery: pkg/util/validation), and the kubelet's
$(VAR) expansion of env values, commands and args. Only `re` is imported.
"""

from __future__ import annotations

import re

# --- Names (apimachinery: pkg/util/validation) --------------------------------

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"

# The patterns are compiled on first use (re keeps them): compiling them all at import cost
# every command milliseconds of start-up, most of them for rules it never checks.

DNS1123_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'my-name',  or '123-abc', regex used for validation is '" + _DNS1123_LABEL + "')"
)
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is '" + _DNS1123_SUBDOMAIN + "')"
)
_QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '" + _QUALIFIED_NAME + "')"
)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '" + _LABEL_VALUE + "')"
)


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label_errors(value: str) -> list[str]:
    """Every problem with `value` as a DNS-1123 label (apimachinery IsDNS1123Label)."""
    errors = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(_max_len(DNS1123_LABEL_MAX))
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(DNS1123_LABEL_MESSAGE)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Every problem with `value` as a DNS-1123 subdomain (apimachinery IsDNS1123Subdomain)."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(DNS1123_SUBDOMAIN_MESSAGE)
    return errors


def validate_dns1123_label(value: str) -> str | None:
    """None if valid, else the Kubernetes message(s), joined by "; "."""
    return "; ".join(dns1123_label_errors(value)) or None


def validate_dns1123_subdomain(value: str) -> str | None:
    """None if valid, else the Kubernetes message(s), joined by "; "."""
    return "; ".join(dns1123_subdomain_errors(value)) or None


def validate_pod_name(name: str) -> str | None:
    """Pod names are DNS-1123 subdomains (apimachinery ValidatePodName).

    Container, volume and namespace names are DNS-1123 labels instead."""
    return validate_dns1123_subdomain(name)


def qualified_name_errors(value: str) -> list[str]:
    """Problems with a label or annotation key: [prefix/]name (apimachinery IsQualifiedName)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errors = ["prefix part " + e for e in dns1123_subdomain_errors(prefix)]
        if errors:
            return errors
    else:
        return [
            "a qualified name "
            + _QUALIFIED_NAME_MESSAGE
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    errors = []
    if len(name) > QUALIFIED_NAME_MAX:
        errors.append("name part " + _max_len(QUALIFIED_NAME_MAX))
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + _QUALIFIED_NAME_MESSAGE)
    return errors


def label_value_errors(value: str) -> list[str]:
    """Problems with a label value (apimachinery IsValidLabelValue)."""
    errors = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(_max_len(LABEL_VALUE_MAX))
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_LABEL_VALUE_MESSAGE)
    return errors


def env_var_name_error(name: str) -> str | None:
    """Environment variable names: any printable ASCII but '=' (Kubernetes ≥ 1.32,
    RelaxedEnvironmentVariableValidation)."""
    if name and "=" not in name and all(" " <= ch <= "~" for ch in name):
        return None
    return "a valid environment variable name must consist only of printable ASCII characters other than '='"


_CONFIG_KEY = r"[-._a-zA-Z0-9]+"


def _dot_errors(key: str) -> list[str]:
    """What keys that become file names may not be: ".", "..", or start with ".."."""
    if key in (".", ".."):
        return [f"must not be '{key}'"]
    return ["must not start with '..'"] if key.startswith("..") else []


def config_key_errors(key: str) -> list[str]:
    """A key of a ConfigMap or Secret (apimachinery IsConfigMapKey): also a file name."""
    errors = []
    if len(key) > 253:
        errors.append(_max_len(253))
    if not re.fullmatch(_CONFIG_KEY, key):
        errors.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')"
        )
    return errors + _dot_errors(key)


_ENV_FILE_KEY = r"[-._a-zA-Z][-._a-zA-Z0-9]*"


def env_file_key_errors(key: str) -> list[str]:
    """A key of kubectl's --from-env-file (apimachinery IsEnvVarName, the strict rule kubectl
    keeps): letters, digits, '_', '-', '.', not starting with a digit, nor with '..'."""
    errors = []
    if not re.fullmatch(_ENV_FILE_KEY, key):
        errors.append(
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or "
            "'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        )
    return errors + _dot_errors(key)


# --- $(VAR) references (kubelet: third_party/forked/golang/expansion) ---------


def expand_env_references(text: str, env: dict[str, str]) -> str:
    """Expand `$(NAME)` in an env value, command or args as the kubelet does.

    `$(NAME)` becomes env[NAME] when NAME is defined and stays as written
    otherwise; `$$` is a literal `$` (so `$$(NAME)` is `$(NAME)`); any other
    `$` is kept. Env values see only the variables defined before them;
    command and args see the whole environment.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env[name] if name in env else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)
