"""The GitHub Pages workflow: valid YAML, builds with the README's command, deploys officially."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_runs_on_push_to_main_with_pages_permissions() -> None:
    workflow = load()
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_build_job_runs_the_readme_build_command_and_uploads_site() -> None:
    readme = (ROOT / "README.md").read_text()
    build_command = re.findall(r"```sh\n(.+?)\n```", readme, flags=re.S)[0]
    steps = load()["jobs"]["build"]["steps"]
    assert build_command in [step.get("run") for step in steps]
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    upload = next(s for s in steps
                  if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "site"


def test_deploy_job_uses_the_official_action_after_the_build() -> None:
    deploy = load()["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
