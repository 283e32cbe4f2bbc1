"""docs/api.md kept true to nodes/api.py: every route the API registers is documented, and
every refusal code it can give -- its own and the ledger's validation codes -- is in the
doc's refusal table with the HTTP status the code gives it.

Read from the source text (no node is started): the routes registered with ``add_get`` /
``add_post``, the ``Refusal(<status>, "<code>"`` calls, the ``REFUSAL_STATUS`` map of the
validation codes, and the ``TransactionRefused("<code>"`` calls of the p2pchain package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "nodes" / "api.py"
DOC = ROOT / "docs" / "api.md"
PACKAGE = ROOT / "p2pchain"

# app.router.add_get("/v1/status", status) -- or add_get(PEER_PATH, ...), a name, not a literal
ROUTE = re.compile(r'\.add_(?P<method>get|post)\(\s*(?:"(?P<path>[^"]+)"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))')
ROUTES_NOT_DOCUMENTED = {"PEER_PATH"}  # the websocket link between nodes, not for clients
# Refusal(404, "unknown_channel", ...) and Refusal(413 if items else 400, "bad_batch_size", ...)
REFUSAL = re.compile(r'\bRefusal\(\s*(?P<status>[^,()]+?)\s*,\s*"(?P<code>[a-z_]+)"')
STATUS = re.compile(r"\b[1-5]\d\d\b")
REFUSAL_STATUS = re.compile(r"^REFUSAL_STATUS\s*=\s*\{(?P<body>.*?)\}", re.S | re.M)
MAPPED = re.compile(r'"(?P<code>[a-z_]+)"\s*:\s*(?P<status>\d{3})')
TRANSACTION_REFUSED = re.compile(r'\bTransactionRefused\(\s*"(?P<code>[a-z_]+)"')
# | `code` | status(es) | when |
TABLE_ROW = re.compile(r"^\|\s*`(?P<code>[a-z_]+)`\s*\|(?P<status>[^|]*)\|", re.M)


def _normalised(path: str) -> str:
    """A route as the doc writes it: ``{key:.+}`` (a variable with a pattern) as ``{key}``."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def api_routes() -> dict[str, str]:
    """Each route path nodes/api.py registers -> its method (``GET``/``POST``)."""
    routes: dict[str, str] = {}
    for match in ROUTE.finditer(API.read_text()):
        if match["name"] is not None:
            assert match["name"] in ROUTES_NOT_DOCUMENTED, (
                f"a route registered by the name {match['name']}: give its path to the test and the doc")
            continue
        routes[_normalised(match["path"])] = match["method"].upper()
    return routes


def api_refusals() -> dict[str, set[int]]:
    """Each ``Refusal`` code of nodes/api.py -> the HTTP statuses it is given."""
    codes: dict[str, set[int]] = {}
    for match in REFUSAL.finditer(API.read_text()):
        statuses = {int(s) for s in STATUS.findall(match["status"])}
        assert statuses, f"no literal status in Refusal({match['status']}, {match['code']!r}, ...)"
        codes.setdefault(match["code"], set()).update(statuses)
    return codes


def validation_statuses() -> dict[str, int]:
    """``REFUSAL_STATUS`` of nodes/api.py: each validation code -> its HTTP status."""
    found = REFUSAL_STATUS.search(API.read_text())
    assert found, "REFUSAL_STATUS not found in nodes/api.py"
    return {m["code"]: int(m["status"]) for m in MAPPED.finditer(found["body"])}


def validation_codes() -> set[str]:
    """Every ``TransactionRefused("<code>"`` raised in the p2pchain package."""
    return {m["code"] for source in sorted(PACKAGE.rglob("*.py"))
            for m in TRANSACTION_REFUSED.finditer(source.read_text())}


def every_code_with_statuses() -> dict[str, set[int]]:
    """What the API answers: its own refusals and the validation codes, each with every
    status it may get over HTTP."""
    codes = api_refusals()
    for code, status in validation_statuses().items():
        codes.setdefault(code, set()).add(status)
    return codes


def doc_text() -> str:
    return DOC.read_text()


def doc_refusal_table() -> dict[str, set[int]]:
    """The rows of the doc's "Refusal codes" table: code -> the statuses it lists."""
    text = doc_text()
    start = text.find("\n## Refusal codes")
    assert start >= 0, "docs/api.md has no '## Refusal codes' section"
    end = text.find("\n## ", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    rows: dict[str, set[int]] = {}
    for match in TABLE_ROW.finditer(section):
        assert match["code"] not in rows, f"{match['code']} has two rows in the refusal table"
        rows[match["code"]] = {int(s) for s in STATUS.findall(match["status"])}
    return rows


def test_the_source_parsers_find_what_the_api_is_known_to_have():
    # if a refactoring broke a pattern, the tests below would pass on nothing
    routes = api_routes()
    assert routes["/v1/status"] == "GET" and routes["/v1/admin/fault"] == "POST"
    assert "/v1/channels/{channel}/state/{namespace}/{key}" in routes
    assert "/ui/" not in routes and len(routes) >= 13
    refusals = api_refusals()
    assert refusals["unknown_channel"] == {404} and refusals["bad_batch_size"] == {400, 413}
    assert validation_statuses()["bad_signature"] == 401
    assert {"malformed", "bad_signature", "replayed_nonce"} <= validation_codes()


def test_every_route_of_the_api_is_documented():
    text = doc_text()
    missing = [f"{method} {path}" for path, method in api_routes().items() if f"`{method} {path}`" not in text]
    assert not missing, f"routes of nodes/api.py not in docs/api.md: {missing}"


def test_every_refusal_code_of_the_api_is_in_the_refusal_table_with_its_status():
    text, table = doc_text(), doc_refusal_table()
    for code, statuses in api_refusals().items():
        assert f"`{code}`" in text, f"{code} is not in docs/api.md"
        assert code in table, f"{code} has no row in the refusal table of docs/api.md"
    wrong = {code: (sorted(table[code]), sorted(statuses))
             for code, statuses in every_code_with_statuses().items() if code in table and table[code] != statuses}
    assert not wrong, f"code: (statuses in docs/api.md, statuses in the code): {wrong}"


def test_every_validation_refusal_of_the_ledger_is_documented_with_the_status_the_api_gives_it():
    table, mapped = doc_refusal_table(), validation_statuses()
    for code in validation_codes() | set(mapped):
        # a code without a status would make the API fail with a 500 instead of refusing
        assert code in mapped, f"TransactionRefused code {code} has no HTTP status in REFUSAL_STATUS"
        assert code in table, f"TransactionRefused code {code} has no row in the refusal table of docs/api.md"
        assert mapped[code] in table[code], f"{code}: docs/api.md says {sorted(table[code])}, the API {mapped[code]}"


def test_the_refusal_table_lists_no_code_the_api_no_longer_gives():
    stale = set(doc_refusal_table()) - set(every_code_with_statuses()) - validation_codes()
    assert not stale, f"codes in the refusal table of docs/api.md that the API does not give: {sorted(stale)}"
