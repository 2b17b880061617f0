"""The example configurations' headers: one set of variables serves every example."""

import re
from collections import defaultdict
from pathlib import Path

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.conf"))
DECLARE = re.compile(r"^#.*?declare env (\w+)=([^\s`]+)", re.MULTILINE)
USED = re.compile(r"\$\{(\w+)\}")
BROKER_CREDENTIAL = re.compile(r"^#\s+amqp://([^:@\s]+):", re.MULTILINE)


def declared_values():
    values = defaultdict(set)
    for path in EXAMPLES:
        for name, value in DECLARE.findall(path.read_text()):
            values[name].add(value)
    return values


def test_no_two_examples_ask_for_different_values_of_one_variable():
    assert EXAMPLES
    conflicting = {name: sorted(v) for name, v in declared_values().items() if len(v) > 1}
    assert conflicting == {}


def test_every_variable_an_example_uses_is_declared_in_some_example_header():
    declared = set(declared_values())
    for path in EXAMPLES:
        settings = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
        assert set(USED.findall(settings)) <= declared, path.name


def test_the_header_comments_use_no_variable_that_no_header_declares():
    declared = set(declared_values())
    for path in EXAMPLES:
        assert set(USED.findall(path.read_text())) <= declared, path.name


def test_the_broker_credential_lines_name_the_declared_broker_user():
    (user,) = declared_values()["AMQP_USER"]
    for path in EXAMPLES:
        assert set(BROKER_CREDENTIAL.findall(path.read_text())) <= {user}, path.name
