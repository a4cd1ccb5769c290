"""The shape of the code: no import cycle between modules, no module loaded from a string, one writer per table.

The layer order itself is import-linter's contract in pyproject.toml (`make lint` runs `lint-imports`); these
checks hold even where a contract is silent, and run with the tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "voice_service"


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_cycles(graph: grimp.ImportGraph, prefix: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(m for m in graph.modules if m == prefix or m.startswith(prefix + "."))
    edges = {
        m: sorted(w for w in graph.find_modules_directly_imported_by(m) if w == prefix or w.startswith(prefix + "."))
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = edges[node]
            if i < len(successors):
                work.append((node, i + 1))
                nxt = successors[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def test_no_import_cycle_between_modules() -> None:
    # grimp reads every import statement, those inside functions included; TYPE_CHECKING blocks never run.
    graph = grimp.build_graph(
        "voice_service", "providers", "analysis", exclude_type_checking_imports=True, cache_dir=None
    )
    assert _module_cycles(graph, "voice_service") == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    graph.add_import(importer="pkg.d", imported="pkg.a")
    assert _module_cycles(graph, "pkg") == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_module_is_loaded_from_a_string() -> None:
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
            elif isinstance(node, ast.alias):
                name = node.name
            if name in ("import_module", "__import__", "importlib"):
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')} {name}")
    assert found == []


# Which package (or module) of voice_service/ owns each table: the only place that may write it.
OWNERS = {
    "voice_call_logs": "calls",
    "voice_call_provider_ids": "calls",
    "voice_call_media_tokens": "calls",
    "call_listen_tokens": "calls",
    "webhook_replay_guard": "telephony",
    "leads": "leads",
    "voice_call_batches": "batches",
    "voice_call_batch_entries": "batches",
    "dispatch_pacing": "batches",
    "billing_pricing_catalog": "billing",
    "billing_wallets": "billing",
    "billing_ledger_transactions": "billing",
    "billing_wallet_reservations": "billing",
    "billing_usage_events": "billing",
    "voice_call_analysis": "call_analysis",
    "recording_settings": "recordings",
    "console_sessions": "tenancy",
    "domain_events": "events",
    "webhook_endpoints": "events",
    "webhook_deliveries": "events",
    "webhook_delivery_attempts": "events",
    "tenants": "tenancy",
    "users": "tenancy",
    "memberships": "tenancy",
    "api_keys": "tenancy",
    "voice_permissions": "tenancy",
    "voice_user_profiles": "tenancy",
    "voice_agents": "agents",
    "voice_agent_numbers": "numbers",
    "voice_agent_voices": "voices",
    "idempotency_keys": "idempotency.py",
    "schema_migrations": "migrations.py",
    "service_logins": "dbroles.py",
}
# A write statement (`DO UPDATE SET` of an upsert names no table) or a `Table("name", …)` of the CRUD helper.
_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([a-z_][a-z0-9_]*)")
_TABLE = re.compile(r"\bTable\(\s*\"([a-z_][a-z0-9_]*)\"")


def _writes() -> list[tuple[str, str, str]]:
    """(owner part of the path, table, where) for every write statement in voice_service/."""
    out = []
    for path in _sources():
        text = path.read_text()
        rel = path.relative_to(PACKAGE)
        owner_part = rel.parts[0]
        for pattern in (_WRITE, _TABLE):
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                out.append((owner_part, match.group(1), f"voice_service/{rel}:{line}"))
    return out


def test_the_write_scan_sees_the_known_writers() -> None:
    writers = {(owner, table) for owner, table, _ in _writes()}
    assert {
        ("calls", "voice_call_logs"),
        ("leads", "leads"),
        ("batches", "voice_call_batch_entries"),
        ("billing", "billing_usage_events"),
        ("call_analysis", "voice_call_analysis"),
    } <= writers


@pytest.mark.parametrize("table", sorted(OWNERS))
def test_one_writer_per_table(table: str) -> None:
    strangers = [where for owner, written, where in _writes() if written == table and owner != OWNERS[table]]
    assert strangers == [], f"{table} is written outside voice_service/{OWNERS[table]}"


def test_every_written_table_has_an_owner() -> None:
    assert {table for _, table, _ in _writes()} - set(OWNERS) == set()
