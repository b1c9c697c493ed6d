"""The protocol document says what the models say."""

from __future__ import annotations

from smartcity import docgen


def test_protocol_tables_match_the_models() -> None:
    text = docgen.DOC.read_text()
    assert docgen.render(text) == text, "run: python -m smartcity.docgen"


def test_every_broker_command_in_the_docs_logs_in() -> None:
    """The broker refuses anonymous clients (README, docs/edge.md): an example without a login
    fails for whoever copies it."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    found = 0
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith(("mosquitto_sub ", "mosquitto_pub ")):
                found += 1
                assert " -u " in line, f"{doc.name}:{number}: {line}"
                assert " -P " in line, f"{doc.name}:{number}: {line}"
    assert found >= 1  # the README's observer example (commands go through the API now)


def test_the_sample_agent_config_names_every_option_of_its_driver() -> None:
    import tomllib
    from pathlib import Path

    from edge.drivers import DRIVERS

    sample = Path(__file__).parent.parent / "deploy" / "edge" / "agent.toml"
    text = sample.read_text()
    edge = tomllib.loads(text)["edge"]
    options = DRIVERS[edge["driver"]][edge["device_type"]].Options.model_fields
    assert options, "the sample's driver has options to show"
    for name in options:
        assert f"# {name} = " in text, f"{sample.name} does not show driver option {name}"
