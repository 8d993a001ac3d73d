"""A retrieved file truncated or corrupted: the parser returns ``ERROR_CORRUPTED_OUTPUT`` naming the file
and what is wrong, and stores no output at all.

Each test runs one real job of the real command on the localhost computer, then parses its real
retrieved files again with one file damaged (cut mid-row, garbage bytes, a column too many, a value that
is no number, rows missing): a twin ``CalcJobNode`` of the job (same computer, process type and inputs)
gets a ``retrieved`` folder of those files, and the plugin's parser runs on it through aiida-core's
``Parser.parse_from_node``. Two more jobs damage the file on the computer itself, so the engine's own
parse step is shown too.
"""

from __future__ import annotations

import json
import shutil

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.ensemble import EnsembleData
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.parsers import PredictParser, TrainParser
from aiida_cgcnn.pretrained.registry import MODELS_DIR, available
from tests.aiida.test_parsers import wrapped_code  # noqa: F401  (a fixture)

SHIPPED = "elastic-moduli"  # real checkpoints without training here
CORRUPTED = 320
GARBAGE = bytes(range(128, 256)) * 4  # not UTF-8, not JSON, not a checkpoint


@pytest.fixture
def shipped():
    if SHIPPED not in available():
        pytest.skip(f"the pretrained model {SHIPPED!r} is not installed")
    return MODELS_DIR / SHIPPED


def _files(node: orm.CalcJobNode) -> dict[str, bytes]:
    retrieved = node.outputs.retrieved
    return {
        name: retrieved.base.repository.get_object_content(name, mode="rb")
        for name in retrieved.base.repository.list_object_names()
    }


def _reparse(node: orm.CalcJobNode, parser, files: dict[str, bytes]):
    """Run ``parser`` on a twin of the finished job ``node`` whose retrieved folder holds ``files``:
    the result's outputs (what the parser registered) and the parse's process node."""
    twin = orm.CalcJobNode(computer=node.computer, process_type=node.process_type)
    for link in node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all():
        twin.base.links.add_incoming(link.node, LinkType.INPUT_CALC, link.link_label)
    twin.store()
    retrieved = orm.FolderData()
    for name, content in files.items():
        retrieved.base.repository.put_object_from_bytes(content, name)
    retrieved.base.links.add_incoming(twin, LinkType.CREATE, "retrieved")
    retrieved.store()
    return parser.parse_from_node(twin, store_provenance=False)


def _assert_refused(node, parser, files, filename: str, reason: str) -> None:
    outputs, parse = _reparse(node, parser, files)
    assert parse.exit_status == CORRUPTED, (filename, reason, parse.exit_message)
    assert parse.exit_message.startswith(f"The retrieved {filename} is truncated or corrupted: ")
    assert reason in parse.exit_message, parse.exit_message
    assert outputs == {}  # nothing registered, so nothing would be attached or stored


def _replace(files: dict[str, bytes], name: str, content: bytes) -> dict[str, bytes]:
    return {**files, name: content}


def _lines(files: dict[str, bytes], name: str) -> list[str]:
    return files[name].decode().splitlines(keepends=True)


def _run_predict(code, model, dataset) -> orm.CalcJobNode:
    _, node = run_get_node(PredictCalculation, code=code, model=model, dataset=dataset, device="cpu")
    return node


def test_predict_corrupted_outputs(cgcnn_code, shipped, dataset_node, wrapped_code):  # noqa: F811
    model = ModelData.get_or_create(shipped / "member-0.pt")
    node = _run_predict(cgcnn_code, model, dataset_node)
    assert node.is_finished_ok, node.exit_message
    files = _files(node)
    outputs, parse = _reparse(node, PredictParser, files)  # the control: the files as retrieved
    assert parse.exit_status == 0 and set(outputs) == {"predictions", "skipped"}
    assert len(outputs["predictions"].get_array("ids")) == dataset_node.size

    lines = _lines(files, "predictions.csv")  # header, "# units", one row per structure
    head, last = "".join(lines[:-1]), lines[-1]
    width = len(lines[0].split(","))
    column = lines[0].split(",")[1].strip()
    fields = lines[2].rstrip("\r\n").split(",")
    skipped = len(json.loads(files["status.json"])["skipped"])
    cases = [
        (head + last[: len(last) // 2], "predictions.csv", "cut short"),
        (
            head + last.rstrip("\r\n") + ",1.0\r\n",
            "predictions.csv",
            f"line {len(lines)} has {width + 1} fields",
        ),
        (GARBAGE, "predictions.csv", "not UTF-8 text"),
        (
            "".join(lines[:2]) + ",".join([fields[0], "abc", *fields[2:]]) + "\r\n" + "".join(lines[3:]),
            "predictions.csv",
            f"the {column!r} of {fields[0]!r} is 'abc', not a number",
        ),
        (
            head,
            "predictions.csv",
            f"{len(lines) - 3} rows and {skipped} skipped structures, but the dataset has 40",
        ),
        ("".join(lines).replace(column, "other_pred", 1), "predictions.csv", "the model predicts"),
    ]
    for content, filename, reason in cases:
        data = content.encode() if isinstance(content, str) else content
        _assert_refused(node, PredictParser, _replace(files, filename, data), filename, reason)
    status = files["status.json"]
    _assert_refused(
        node, PredictParser, _replace(files, "status.json", status[:20]), "status.json", "not valid JSON"
    )
    _assert_refused(
        node, PredictParser, _replace(files, "status.json", b"[]"), "status.json", "'status' string"
    )

    # the same on the computer itself: the job's own parse step fails, and only retrieved is attached
    code = wrapped_code(
        "cgcnn-cut", '"$REAL" "$@"\nhead -c -9 run/predictions.csv > cut && mv cut run/predictions.csv'
    )
    cut = _run_predict(code, model, dataset_node)
    assert cut.exit_status == CORRUPTED
    assert cut.exit_message == (
        "The retrieved predictions.csv is truncated or corrupted: cut short: its last line has no line break"
    )
    assert set(cut.outputs) == {"retrieved", "remote_folder"}


def test_ensemble_predict_corrupted_outputs(cgcnn_code, shipped, dataset_node, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    node = _run_predict(cgcnn_code, EnsembleData(folder=folder).store(), dataset_node)
    assert node.is_finished_ok, node.exit_message
    files = _files(node)
    outputs, parse = _reparse(node, PredictParser, files)
    assert parse.exit_status == 0 and {"predictions", "n_out_of_domain"} <= set(outputs)

    lines = _lines(files, "predictions.csv")  # ["# model: ..."], header, "# units", one row per structure
    top = 1 if lines[0].startswith("# model: ") else 0
    header = lines[top].rstrip("\r\n").split(",")
    head, last = "".join(lines[:-1]), lines[-1]
    first = lines[top + 2].rstrip("\r\n").split(",")
    at = header.index(next(c for c in header if c.endswith("_pred")))
    wrong = ",".join([*first[:at], "1.5e", *first[at + 1 :]]) + "\r\n"
    short = ",".join(first[:-2]) + "\r\n"
    before, after = "".join(lines[: top + 2]), "".join(lines[top + 3 :])
    skipped = len(json.loads(files["status.json"])["skipped"])
    renamed = [*lines[:top], lines[top].replace(header[at], "renamed", 1), *lines[top + 1 :]]
    cases = [
        (head + last[: len(last) // 2], "cut short"),
        (head, f"{len(lines) - top - 3} rows and {skipped} skipped structures, but the dataset has 40"),
        (before + wrong + after, "could not convert string to float: '1.5e'"),
        (before + short + after, f"line {top + 3} has {len(first) - 2} fields"),
        ("".join(renamed), "lacks the columns"),
    ]
    for content, reason in cases:
        _assert_refused(
            node,
            PredictParser,
            _replace(files, "predictions.csv", content.encode()),
            "predictions.csv",
            reason,
        )


def test_train_corrupted_outputs(cgcnn_code, dataset_node, small_parameters, wrapped_code):  # noqa: F811
    parameters = {**small_parameters, "train": {"epochs": 2, "batch_size": 8, "seed": 1}}
    _, node = run_get_node(
        TrainCalculation, code=cgcnn_code, dataset=dataset_node, parameters=orm.Dict(parameters)
    )
    assert node.is_finished_ok, node.exit_message
    files = _files(node)
    outputs, parse = _reparse(node, TrainParser, files)
    assert parse.exit_status == 0
    assert set(outputs) == {"model", "metrics", "learning_curve", "test_predictions"}

    best = files["best.pt"]
    curve = _lines(files, "learning_curve.csv")
    columns = curve[0].rstrip("\r\n").split(",")
    row = curve[1].rstrip("\r\n").split(",")
    test_rows = _lines(files, "test_predictions.csv")
    cases = [
        ("best.pt", best[: len(best) // 2], "not a loadable aiida-cgcnn checkpoint"),
        ("best.pt", GARBAGE, "not a loadable aiida-cgcnn checkpoint"),
        ("metrics.json", files["metrics.json"][:50], "not valid JSON"),
        ("metrics.json", b'["a list"]', "not a JSON object"),
        ("learning_curve.csv", "".join(curve[:-1]).encode() + curve[-1][:5].encode(), "cut short"),
        ("learning_curve.csv", (curve[0] + ",".join(row[:-1]) + "\r\n").encode(), "line 2 has"),
        (
            "learning_curve.csv",
            (curve[0] + ",".join(["x", *row[1:]]) + "\r\n").encode(),
            f"the {columns[0]!r} of line 2 is 'x', not a number",
        ),
        ("learning_curve.csv", curve[0].encode(), "a header without epochs"),
        ("test_predictions.csv", "".join(test_rows)[:-7].encode(), "cut short"),
        ("status.json", GARBAGE, "not UTF-8 text"),
    ]
    for filename, content, reason in cases:
        _assert_refused(node, TrainParser, _replace(files, filename, content), filename, reason)

    # on the computer: metrics.json cut after best.pt was written; no model is stored without metrics
    code = wrapped_code(
        "cgcnn-cut-metrics", '"$REAL" "$@"\nhead -c 40 run/metrics.json > cut && mv cut run/metrics.json'
    )
    _, cut = run_get_node(TrainCalculation, code=code, dataset=dataset_node, parameters=orm.Dict(parameters))
    assert cut.exit_status == CORRUPTED
    assert cut.exit_message.startswith("The retrieved metrics.json is truncated or corrupted: not valid JSON")
    assert set(cut.outputs) == {"retrieved", "remote_folder"}
    assert json.loads(cut.outputs.retrieved.get_object_content("status.json"))["status"] == "completed"
