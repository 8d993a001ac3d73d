"""The README's AiiDA demo and the provenance commands, on the temporary profile."""

import json

from aiida import orm
from click.testing import CliRunner

from aiida_cgcnn.cli.provenance import model_group
from aiida_cgcnn.workflows.demo import run_aiida_demo


def test_aiida_demo_and_provenance_commands(aiida_profile, aiida_localhost, tmp_path):
    aiida_localhost.set_minimum_job_poll_interval(0.2)
    lines = []
    pks = run_aiida_demo(n_structures=30, epochs=2, echo=lines.append, computer_label=aiida_localhost.label)
    text = "\n".join(lines)
    assert "(CalcJob)" in text and "(calcfunction)" in text
    model = orm.load_node(pks["model"])

    runner = CliRunner()
    result = runner.invoke(model_group, ["list", "--json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert any(r["pk"] == model.pk and r["dataset_pk"] == pks["dataset"] for r in rows)

    predict = orm.load_node(pks["predict"])
    structure_uuid = str(predict.outputs.predictions.get_array("ids")[0])
    structure = orm.load_node(structure_uuid)
    result = runner.invoke(model_group, ["predictions", str(structure.pk), "--json"], catch_exceptions=False)
    records = json.loads(result.output)
    assert len(records) == 2  # the CalcJob's and the calcfunction's
    assert {r["model_pk"] for r in records} == {model.pk}

    result = runner.invoke(
        model_group, ["export", str(model.pk), str(tmp_path / "m.pt")], catch_exceptions=False
    )
    assert (tmp_path / "m.pt").read_bytes() == model.get_content(mode="rb")
    result = runner.invoke(model_group, ["predictions", str(model.pk)])
    assert result.exit_code != 0 and "not a StructureData" in result.output
