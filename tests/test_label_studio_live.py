"""The review round trip through the real Label Studio (opt-in: `make test-labelstudio`).

Label Studio runs from its own venv (`make test-labelstudio` makes `.venv-labelstudio/` and
sets PRM_LABEL_STUDIO to its `label-studio` script), on 127.0.0.1 with a temporary data
dir, an admin user and an API token, with telemetry, Sentry and the version check off. Both
unit modes go out with `prm export`, into a project made from our config; annotations are
posted through the API as a reviewer's browser would; the project is exported as JSON,
JSON-MIN, CSV and as a snapshot with user details; `prm import` reads each back.

PRM_LABEL_STUDIO_RECORD=DIR also writes the exports to DIR: tests/data/label_studio/recorded/
holds such a run's files, read by tests/test_review_label_studio.py in the default suite.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from prm.app.cli import main
from prm.io import read_traces

pytestmark = pytest.mark.labelstudio

REPO = Path(__file__).resolve().parent.parent
TRACES = REPO / "tests" / "data" / "label_studio" / "traces.jsonl"
TOKEN = "prm-toolkit-test-token-0123456789"
EMAIL = "reviewer@example.org"
START_TIMEOUT = 900  # first start migrates a new database: minutes on a loaded machine


def label_studio_script() -> Path:
    named = os.environ.get("PRM_LABEL_STUDIO")
    script = Path(named) if named else REPO / ".venv-labelstudio" / "bin" / "label-studio"
    if not script.exists():
        if named:
            pytest.fail(f"PRM_LABEL_STUDIO={named} does not exist")
        pytest.skip("Label Studio is not installed: run `make test-labelstudio`")
    return script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelStudio:
    """A client of Label Studio's REST API (token authentication)."""

    def __init__(self, url: str, token: str):
        self.url, self.session = url, requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs):
        answer = self.session.request(method, self.url + path, timeout=300, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text[:500])
        return answer

    def export(self, project: int, kind: str) -> str:
        return self.call("GET", f"/api/projects/{project}/export", params={"exportType": kind}).text

    def snapshot_with_users(self, project: int, kinds=("JSON", "JSON_MIN")) -> dict[str, str]:
        """Export > snapshot with the annotators' details (completed_by as a user object)."""
        options = {"annotations__completed_by": {"only_id": False}}
        snapshot = self.call("POST", f"/api/projects/{project}/exports/", 201,
                             json={"title": "with users", "serialization_options": options}).json()
        for _ in range(300):
            status = self.call("GET", f"/api/projects/{project}/exports/{snapshot['id']}").json()["status"]
            if status in ("completed", "failed"):
                break
            time.sleep(1)
        assert status == "completed"
        return {kind: self.call("GET", f"/api/projects/{project}/exports/{snapshot['id']}/download",
                                params={"exportType": kind}).text for kind in kinds}


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if os.environ.get("PRM_LABEL_STUDIO_URL"):  # a running instance (its user 1 holding the token)
        yield LabelStudio(os.environ["PRM_LABEL_STUDIO_URL"], os.environ.get("PRM_LABEL_STUDIO_TOKEN", TOKEN))
        return
    script = label_studio_script()
    data_dir = tmp_path_factory.mktemp("label-studio-data")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABEL_STUDIO_", "HEARTEX_"))}
    env.update(LABEL_STUDIO_USERNAME=EMAIL, LABEL_STUDIO_PASSWORD="prm-toolkit-test",
               LABEL_STUDIO_USER_TOKEN=TOKEN, LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true", LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
               COLLECT_ANALYTICS="false", LATEST_VERSION_CHECK="false", SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
               FEATURE_FLAGS_OFFLINE="true", PYTHONPATH="")
    log = open(data_dir / "server.log", "wb")
    server = subprocess.Popen([str(script), "start", "--no-browser", "--internal-host", "127.0.0.1",
                               "--port", str(port), "--data-dir", str(data_dir)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert server.poll() is None, (data_dir / "server.log").read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Label Studio did not start in time"
            time.sleep(2)
        yield LabelStudio(url, TOKEN)
    finally:  # its own process group (start_new_session): whatever it started stops with it
        stop(server, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            stop(server, signal.SIGKILL)
            server.wait()
        log.close()


def stop(server: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(server.pid, sig)
    except ProcessLookupError:  # already gone
        pass


def record(name: str, text: str) -> None:
    """Keep a real export for the default suite's tests (PRM_LABEL_STUDIO_RECORD=DIR)."""
    folder = os.environ.get("PRM_LABEL_STUDIO_RECORD")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(text if text.endswith("\n") else text + "\n")


def new_project(ls: LabelStudio, tmp_path: Path, unit: str) -> tuple[int, list[dict]]:
    """`prm export` for the unit, a project from its config, the tasks imported with their
    pre-annotations; returns the project and its tasks as Label Studio holds them."""
    tasks_file = tmp_path / f"{unit}.json"
    assert main(["export", "--to", "label-studio", str(TRACES), str(tasks_file), "--unit", unit]) == 0
    config = (tmp_path / f"{unit}.label_config.xml").read_text()
    ls.call("POST", "/api/projects/validate", 204, json={"label_config": config})
    project = ls.call("POST", "/api/projects", 201, json={"title": f"prm {unit}", "label_config": config}).json()["id"]
    tasks = json.loads(tasks_file.read_text())
    imported = ls.call("POST", f"/api/projects/{project}/import", 201, json=tasks).json()
    assert (imported["task_count"], imported["prediction_count"]) == (len(tasks), len(tasks))
    held = ls.call("GET", "/api/tasks", params={"project": project, "page_size": 100}).json()["tasks"]
    assert sorted(t["data"]["trace_id"] for t in held) == sorted(t["data"]["trace_id"] for t in tasks)
    return project, held


def choice(name: str, to: str, value: str) -> dict:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": [value]}}


def comment(name: str, to: str, text: str) -> dict:
    return {"from_name": name, "to_name": to, "type": "textarea", "value": {"text": [text]}}


def import_export(tmp_path: Path, name: str, text: str, into: Path = TRACES) -> list:
    export = tmp_path / name
    export.write_text(text)
    out = tmp_path / (name + ".reviewed.jsonl")
    assert main(["import", "--from", "label-studio", str(export), str(into), str(out)]) == 0
    return read_traces(out)


def reviews(traces) -> dict:
    return {(t.id, i): [(r.reviewer, r.hard_label, r.comment) for r in s.reviews]
            for t in traces for i, s in enumerate(t.steps) if s.reviews}


def test_per_step_tasks_round_trip_through_label_studio(label_studio, tmp_path, capsys):
    project, tasks = new_project(label_studio, tmp_path, "step")
    by_trace = {t["data"]["trace_id"]: t["id"] for t in tasks}
    label_studio.call("POST", f"/api/tasks/{by_trace['shop-1']}/annotations/", 201, json={
        "result": [choice("label", "step", "bad"), comment("comment", "step", "6 + 5 is 11, not 12")], "lead_time": 20.5})
    label_studio.call("POST", f"/api/tasks/{by_trace['train-7']}/annotations/", 201, json={
        "result": [choice("label", "step", "good")], "lead_time": 4.0})
    label_studio.call("POST", f"/api/tasks/{by_trace['train-7']}/annotations/", 201, json={
        "result": [], "was_cancelled": True})  # skipped: not a review

    exports = {"json": label_studio.export(project, "JSON"), "json_min": label_studio.export(project, "JSON_MIN"),
               "csv": label_studio.export(project, "CSV")}
    snapshot = label_studio.snapshot_with_users(project)
    exports.update(snapshot_json=snapshot["JSON"], snapshot_json_min=snapshot["JSON_MIN"])
    for name, text in exports.items():
        record(f"steps_{name}.{'csv' if name == 'csv' else 'json'}", text)
    assert isinstance(json.loads(exports["snapshot_json"])[0]["annotations"][0]["completed_by"], dict)

    expected = {("shop-1", 1): [("label-studio user 1", 0, "6 + 5 is 11, not 12")],
                ("train-7", 0): [("label-studio user 1", 1, None)]}
    from_json = import_export(tmp_path, "steps.json", exports["json"])
    assert reviews(from_json) == expected
    assert reviews(import_export(tmp_path, "steps_min.json", exports["json_min"])) == expected
    # one reviewer, whichever export: the snapshot with user details adds nothing new
    reviewed = tmp_path / "steps.json.reviewed.jsonl"
    assert reviews(import_export(tmp_path, "steps_snapshot.json", exports["snapshot_json"], into=reviewed)) == expected

    export = tmp_path / "steps.csv"
    export.write_text(exports["csv"])
    capsys.readouterr()
    assert main(["import", "--from", "label-studio", str(export), str(TRACES), str(tmp_path / "csv.jsonl")]) == 1
    err = capsys.readouterr().err.strip()
    assert "CSV" in err and "Export > JSON" in err and len(err.splitlines()) == 1


def test_per_trace_tasks_of_different_lengths_round_trip_through_label_studio(label_studio, tmp_path):
    project, tasks = new_project(label_studio, tmp_path, "trace")
    by_trace = {t["data"]["trace_id"]: t for t in tasks}
    assert [len(by_trace[t]["data"]["steps"]) for t in ("shop-1", "train-7")] == [3, 2]
    label_studio.call("POST", f"/api/tasks/{by_trace['shop-1']['id']}/annotations/", 201, json={"result": [
        choice("step_0_label", "step_0", "good"), choice("step_1_label", "step_1", "bad"),
        comment("step_1_comment", "step_1", "6 + 5 is 11"), choice("step_2_label", "step_2", "unsure")],
        "lead_time": 31.0})
    label_studio.call("POST", f"/api/tasks/{by_trace['train-7']['id']}/annotations/", 201, json={"result": [
        choice("step_0_label", "step_0", "good"), comment("step_1_comment", "step_1", "states the answer")]})

    exports = {"json": label_studio.export(project, "JSON"), "json_min": label_studio.export(project, "JSON_MIN")}
    snapshot = label_studio.snapshot_with_users(project)
    exports.update(snapshot_json=snapshot["JSON"], snapshot_json_min=snapshot["JSON_MIN"])
    for name, text in exports.items():
        record(f"traces_{name}.json", text)

    user = "label-studio user 1"
    expected = {("shop-1", 0): [(user, 1, None)], ("shop-1", 1): [(user, 0, "6 + 5 is 11")],
                ("shop-1", 2): [(user, None, None)], ("train-7", 0): [(user, 1, None)],
                ("train-7", 1): [(user, None, "states the answer")]}  # each comment on its own step only
    assert reviews(import_export(tmp_path, "traces.json", exports["json"])) == expected
    assert reviews(import_export(tmp_path, "traces_min.json", exports["json_min"])) == expected
    assert reviews(import_export(tmp_path, "traces_snapshot.json", exports["snapshot_json"])) == expected
    by_email = reviews(import_export(tmp_path, "traces_snapshot_min.json", exports["snapshot_json_min"]))
    assert by_email == {key: [(EMAIL, *rest) for _, *rest in value] for key, value in expected.items()}


def test_label_studio_version_is_the_one_documented(label_studio):
    version = label_studio.call("GET", "/api/version").json()
    documented = (REPO / "docs" / "view.md").read_text()
    assert f"Label Studio {version['release']}" in documented, version["release"]
