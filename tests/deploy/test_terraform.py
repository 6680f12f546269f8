"""Static checks of terraform/: every .tf file parsed with python-hcl2, no provider, no AWS.

They pin the contract the deploy scripts, the docs and the security review rely on: output
names, resource names, security group rules, encryption and backup settings, the ECR tag
scheme, and that no secret is an input or a literal in a tracked file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"

# Outputs that scripts/*.sh, the docs and the users' guide read, whether or not those files
# exist yet in this checkout.
REQUIRED_OUTPUTS = frozenset(
    {
        "alb_dns_name",
        "alb_name",
        "target_group_arn",
        "security_group_id",
        "database_endpoint",
        "redis_endpoint",
        "s3_bucket_name",
        "ecr_repository_url",
        "ecs_cluster_name",
        "ecs_service_name",
        "worker_service_name",
        "private_subnet_ids",
        "api_task_family",
        "worker_task_family",
        "container_name",
        "log_group_name",
        "codebuild_project_name",
        "aws_region",
        "database_url_secret_arn",
        "platform_database_url_secret_arn",
        "migrate_task_family",
        "migrate_container_name",
        "admin_password_secret_arn",
        "metrics_token_secret_arn",
    }
)

META_KEYS = frozenset(
    {"__comments__", "__inline_comments__", "__is_block__", "__start_line__", "__end_line__"}
)
REF_RE = re.compile(r"(?<![\w.])(var|local)\.([A-Za-z_][A-Za-z0-9_-]*)")
RESOURCE_REF_RE = re.compile(
    r"(?<![\w.\"])(data\.)?((?:aws|random)_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)"
)
OUTPUT_USE_RE = re.compile(
    r"terraform(?:\s+-chdir=\S+)?\s+output\s+(?:-(?:raw|json|no-color)\s+)*([a-z_][a-z0-9_]*)"
)
# scripts/lib.sh reads outputs through helpers: `tf_output NAME` and `setting NAME [DEFAULT]`
# (output names all contain an underscore, which keeps prose like "setting up" out).
SCRIPT_OUTPUT_USE_RE = re.compile(
    r"(?:^|[\s($;|&])(?:tf_output|setting)\s+([a-z][a-z0-9]*_[a-z0-9_]+)(?![\w-])", re.M
)
ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"


# --- Parsing helpers -------------------------------------------------------------------


@cache
def tf_files() -> tuple[Path, ...]:
    files = tuple(sorted(TF_DIR.glob("*.tf")))
    assert files, f"no .tf files in {TF_DIR}"
    return files


@cache
def parsed(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = hcl2.load(handle)
    return loaded


def unquote(value: Any) -> Any:
    """`"text"` (how python-hcl2 returns a string literal) -> `text`; anything else as is."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def clean(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in META_KEYS}


def top_blocks(kind: str) -> Iterator[dict[str, Any]]:
    for path in tf_files():
        yield from parsed(path).get(kind, [])


def labelled(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource` or `data` block."""
    for block in top_blocks(kind):
        for type_label, named in block.items():
            for name_label, body in named.items():
                yield unquote(type_label), unquote(name_label), body


@cache
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for rtype, name, body in labelled("resource"):
        assert (rtype, name) not in found, f"resource {rtype}.{name} declared twice"
        found[(rtype, name)] = body
    return found


def resources_of(rtype: str) -> dict[str, dict[str, Any]]:
    return {name: body for (kind, name), body in resources().items() if kind == rtype}


def resource(rtype: str, name: str) -> dict[str, Any]:
    key = (rtype, name)
    assert key in resources(), f"resource {rtype}.{name} is missing"
    return resources()[key]


@cache
def data_sources() -> dict[tuple[str, str], dict[str, Any]]:
    return {(rtype, name): body for rtype, name, body in labelled("data")}


@cache
def variables() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in top_blocks("variable"):
        for name, body in block.items():
            assert unquote(name) not in found, f"variable {name} declared twice"
            found[unquote(name)] = body
    return found


@cache
def locals_() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in top_blocks("locals"):
        for name, value in clean(block).items():
            assert name not in found, f"local {name} defined twice"
            found[name] = value
    return found


@cache
def outputs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in top_blocks("output"):
        for name, body in block.items():
            found[unquote(name)] = body
    return found


def strings_in(value: Any) -> Iterator[str]:
    """Every string (expressions included) in a parsed value, comments left out."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in META_KEYS:
                continue
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def all_expressions() -> Iterator[str]:
    for path in tf_files():
        yield from strings_in(parsed(path))


def references(prefix: str) -> set[str]:
    return {
        name for text in all_expressions() for kind, name in REF_RE.findall(text) if kind == prefix
    }


def parse_call_argument(expression: str, function: str) -> Any:
    """The argument of `${function(...)}` (e.g. a jsonencode'd object) parsed as HCL."""
    prefix, suffix = "${" + function + "(", ")}"
    assert expression.startswith(prefix), f"expected {function}(...), got {expression[:80]}"
    assert expression.endswith(suffix)
    inner = expression[len(prefix) : -len(suffix)]
    return hcl2.loads(f"value = {inner}\n")["value"]


def resolve(value: Any, depth: int = 0) -> Any:
    """Evaluate literals and plain `var.`/`local.` references (variables at their default).

    Enough to read names and ports as Terraform would; other expressions come back as text.
    """
    assert depth < 20, "reference cycle"
    if isinstance(value, list):
        return [resolve(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            unquote(key): resolve(item, depth + 1)
            for key, item in value.items()
            if key not in META_KEYS
        }
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\$\{(var|local)\.([A-Za-z_][A-Za-z0-9_]*)\}", value)
    if whole:
        kind, name = whole.groups()
        if kind == "var":
            return resolve(variables()[name].get("default"), depth + 1)
        return resolve(locals_()[name], depth + 1)
    text = unquote(value)
    if not isinstance(text, str):
        return text

    def substitute(match: re.Match[str]) -> str:
        resolved = resolve("${" + match.group(1) + "}", depth + 1)
        return str(resolved) if isinstance(resolved, str | int | float) else match.group(0)

    return re.sub(r"\$\{((?:var|local)\.[A-Za-z_][A-Za-z0-9_]*)\}", substitute, text)


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = body.get(name, [])
    assert isinstance(found, list)
    return [clean(item) for item in found]


def one_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = blocks(body, name)
    assert len(found) == 1, f"expected one {name} block, found {len(found)}"
    return found[0]


def ref(rtype: str, name: str, attribute: str = "id") -> str:
    return "${" + f"{rtype}.{name}.{attribute}" + "}"


# --- Files and versions ----------------------------------------------------------------


def test_every_terraform_file_parses() -> None:
    names = {path.name for path in tf_files()}
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= names
    for example in ("terraform.tfvars.example", "backend.tf.example"):
        with (TF_DIR / example).open(encoding="utf-8") as handle:
            assert isinstance(hcl2.load(handle), dict)


def test_versions_are_pinned_and_no_backend_is_tracked() -> None:
    (settings,) = list(top_blocks("terraform"))
    assert unquote(settings["required_version"]) == ">= 1.5.0"
    providers = settings["required_providers"][0]
    assert unquote(providers["aws"]["source"]) == "hashicorp/aws"
    assert unquote(providers["aws"]["version"]).startswith("~> 5.")
    assert unquote(providers["random"]["version"]).startswith("~> 3.")
    for path in tf_files():
        for block in parsed(path).get("terraform", []):
            assert "backend" not in block, f"{path.name} has a backend block; use backend.tf"
    (provider,) = list(top_blocks("provider"))
    aws = provider['"aws"']
    assert aws["region"] == "${var.aws_region}"
    assert aws["default_tags"], "the provider sets default tags"


def test_backend_example_is_s3_with_locking() -> None:
    with (TF_DIR / "backend.tf.example").open(encoding="utf-8") as handle:
        example = hcl2.load(handle)
    backend = example["terraform"][0]["backend"][0]['"s3"']
    assert {"bucket", "key", "region", "encrypt"} <= set(backend)
    assert backend["encrypt"] is True
    assert backend.get("use_lockfile") is True or "dynamodb_table" in backend


# --- Variables, locals, references, outputs --------------------------------------------


def test_every_referenced_variable_is_declared_and_every_declared_one_used() -> None:
    declared = set(variables())
    used = references("var")
    assert used - declared == set(), "var.X used but not declared"
    assert declared - used == set(), "variables declared but never used"


def test_every_variable_has_a_description_and_well_formed_validations() -> None:
    for name, body in variables().items():
        description = unquote(body.get("description", ""))
        assert isinstance(description, str)
        assert len(description) > 10, f"variable {name} needs a description"
        assert "type" in body, f"variable {name} needs a type"
        for validation in blocks(body, "validation"):
            condition = validation["condition"]
            assert isinstance(condition, str)
            assert f"var.{name}" in condition, f"validation of {name} must test var.{name}"
            assert len(unquote(validation["error_message"])) > 10


def test_secrets_are_not_variables() -> None:
    secretish = re.compile(r"password|token|pepper|jwt|encryption_key|secret_value", re.I)
    assert [name for name in variables() if secretish.search(name)] == []


def test_every_referenced_local_is_defined() -> None:
    assert references("local") - set(locals_()) == set()


def test_every_referenced_resource_and_data_source_exists() -> None:
    declared_resources = set(resources())
    declared_data = set(data_sources())
    missing = set()
    for text in all_expressions():
        for is_data, rtype, name in RESOURCE_REF_RE.findall(text):
            key = (rtype, name)
            if key not in (declared_data if is_data else declared_resources):
                missing.add(f"{is_data}{rtype}.{name}")
    assert missing == set()


def used_output_names() -> set[str]:
    """Outputs read by the scripts and docs (`terraform output [-raw|-json] NAME`)."""
    sources = [*ROOT.glob("scripts/*.sh"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    names: set[str] = set()
    for path in sources:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            names |= set(OUTPUT_USE_RE.findall(text))
            if path.suffix == ".sh":
                code = "\n".join(
                    line for line in text.splitlines() if not line.lstrip().startswith("#")
                )
                names |= set(SCRIPT_OUTPUT_USE_RE.findall(code))
    return names


def test_output_scanner_reads_the_command_forms_the_scripts_use() -> None:
    sample = (
        "HOST=$(terraform -chdir=terraform output -raw database_endpoint)\n"
        "terraform output -json private_subnet_ids | jq -r '.[0]'\n"
        "terraform output alb_dns_name\n"
    )
    assert set(OUTPUT_USE_RE.findall(sample)) == {
        "database_endpoint",
        "private_subnet_ids",
        "alb_dns_name",
    }
    helpers = (
        'URL="$(setting app_url "")"\n'
        'SUBNETS="$(tf_output private_subnet_ids -json)"\n'
        "  api) setting ecs_service_name ;;\n"
        'log "setting up the service"\n'
    )
    assert set(SCRIPT_OUTPUT_USE_RE.findall(helpers)) == {
        "app_url",
        "private_subnet_ids",
        "ecs_service_name",
    }


def test_outputs_used_by_scripts_docs_and_guide_exist() -> None:
    defined = set(outputs())
    assert REQUIRED_OUTPUTS - defined == set()
    assert used_output_names() - defined == set(), "scripts/docs read outputs that do not exist"
    for name, body in outputs().items():
        assert len(unquote(body.get("description", ""))) > 5, f"output {name} needs a description"


def test_output_values_match_the_contract() -> None:
    value = {name: body["value"] for name, body in outputs().items()}
    assert value["database_endpoint"] == ref("aws_db_instance", "main", "address")
    assert value["redis_endpoint"] == ref(
        "aws_elasticache_replication_group", "redis", "primary_endpoint_address"
    )
    assert value["security_group_id"] == ref("aws_security_group", "ecs_tasks")
    assert value["private_subnet_ids"] == "${aws_subnet.private[*].id}"
    assert value["container_name"] == "${local.api_container_name}"
    assert (
        value["database_url_secret_arn"] == '${aws_secretsmanager_secret.app["database-url"].arn}'
    )
    assert value["platform_database_url_secret_arn"] == (
        '${aws_secretsmanager_secret.app["platform-database-url"].arn}'
    )
    assert value["migrate_task_family"] == "${aws_ecs_task_definition.migrate.family}"
    assert value["admin_password_secret_arn"] == (
        '${aws_secretsmanager_secret.app["admin-password"].arn}'
    )
    assert value["metrics_token_secret_arn"] == (
        '${aws_secretsmanager_secret.app["metrics-token"].arn}'
    )


def test_names_the_guide_and_scripts_rely_on() -> None:
    project = variables()["project_name"]["default"]
    assert unquote(project) == "multitenant-ai-minimal"
    expect = {
        "cluster_name": f"{unquote(project)}-cluster",
        "api_service_name": f"{unquote(project)}-service",
        "worker_service_name": f"{unquote(project)}-worker",
        "codebuild_name": f"{unquote(project)}-backend-build",
        "log_group_name": f"/ecs/{unquote(project)}",
        "api_container_name": "backend",
        "worker_container_name": "worker",
        "migrate_task_family": f"{unquote(project)}-migrate",
        "migrate_container_name": "migrate",
    }
    assert {name: resolve(locals_()[name]) for name in expect} == expect
    assert resource("aws_ecs_cluster", "main")["name"] == "${local.cluster_name}"
    assert resource("aws_ecs_service", "api")["name"] == "${local.api_service_name}"
    assert resource("aws_ecs_service", "worker")["name"] == "${local.worker_service_name}"
    assert resource("aws_codebuild_project", "backend")["name"] == "${local.codebuild_name}"
    assert resource("aws_cloudwatch_log_group", "app")["name"] == "${local.log_group_name}"


# --- Security groups -------------------------------------------------------------------


def sg_rules(direction: str) -> list[dict[str, Any]]:
    rtype = f"aws_vpc_security_group_{direction}_rule"
    return [clean(body) for body in resources_of(rtype).values()]


def rule_group(rule: dict[str, Any]) -> str:
    match = re.fullmatch(r"\$\{aws_security_group\.(\w+)\.id\}", rule["security_group_id"])
    assert match, f"rule on an unknown group: {rule}"
    return match.group(1)


def rule_peer(rule: dict[str, Any]) -> str:
    kinds = ("cidr_ipv4", "cidr_ipv6", "referenced_security_group_id", "prefix_list_id")
    peers = [key for key in kinds if key in rule]
    assert len(peers) == 1, f"a rule needs exactly one peer: {rule}"
    value = rule[peers[0]]
    if peers[0] == "referenced_security_group_id":
        match = re.fullmatch(r"\$\{aws_security_group\.(\w+)\.id\}", value)
        assert match, value
        return "sg:" + match.group(1)
    return str(unquote(value))


def rule_ports(rule: dict[str, Any]) -> tuple[int, int]:
    assert unquote(rule["ip_protocol"]) == "tcp", f"only TCP rules are expected: {rule}"
    low, high = resolve(rule["from_port"]), resolve(rule["to_port"])
    assert isinstance(low, int)
    assert isinstance(high, int)
    return low, high


def summary(direction: str, group: str) -> set[tuple[str, int, int]]:
    return {
        (rule_peer(rule), *rule_ports(rule))
        for rule in sg_rules(direction)
        if rule_group(rule) == group
    }


def test_security_groups_have_no_inline_or_legacy_rules() -> None:
    assert set(resources_of("aws_security_group")) == {"alb", "ecs_tasks", "rds", "redis"}
    for name, body in resources_of("aws_security_group").items():
        assert "ingress" not in body, f"{name}: use aws_vpc_security_group_ingress_rule"
        assert "egress" not in body, f"{name}: use aws_vpc_security_group_egress_rule"
        assert len(unquote(body["description"])) > 10
    assert resources_of("aws_security_group_rule") == {}
    for rule in sg_rules("ingress") + sg_rules("egress"):
        assert len(unquote(rule["description"])) > 3


def test_only_the_alb_is_open_to_the_internet_and_only_on_80_and_443() -> None:
    open_rules = [rule for rule in sg_rules("ingress") if rule_peer(rule) in {ANY_V4, ANY_V6}]
    assert open_rules, "the ALB must accept traffic from the internet"
    for rule in open_rules:
        assert rule_group(rule) == "alb"
        assert rule_ports(rule) in {(80, 80), (443, 443)}
    assert summary("ingress", "alb") == {
        (peer, port, port) for peer in (ANY_V4, ANY_V6) for port in (80, 443)
    }


def test_no_security_group_opens_the_app_port_to_a_cidr() -> None:
    cidr_rules = [rule for rule in sg_rules("ingress") if not rule_peer(rule).startswith("sg:")]
    assert cidr_rules, "the ALB's internet rules are CIDR rules"
    for rule in cidr_rules:
        low, high = rule_ports(rule)
        assert not low <= 8000 <= high, f"port 8000 open to {rule_peer(rule)}: {rule}"


def test_tasks_are_reachable_only_from_the_alb_on_8000() -> None:
    assert summary("ingress", "ecs_tasks") == {("sg:alb", 8000, 8000)}
    assert summary("egress", "alb") == {("sg:ecs_tasks", 8000, 8000)}


def test_tasks_egress_is_https_and_the_data_stores_only() -> None:
    assert summary("egress", "ecs_tasks") == {
        (ANY_V4, 443, 443),
        ("sg:rds", 5432, 5432),
        ("sg:redis", 6379, 6379),
    }


def test_data_stores_accept_only_the_tasks() -> None:
    assert summary("ingress", "rds") == {("sg:ecs_tasks", 5432, 5432)}
    assert summary("ingress", "redis") == {("sg:ecs_tasks", 6379, 6379)}
    assert summary("egress", "rds") == set()
    assert summary("egress", "redis") == set()


def test_resources_sit_in_their_security_groups_and_subnets() -> None:
    tasks_sg = ref("aws_security_group", "ecs_tasks")
    for name in ("api", "worker"):
        network = one_block(resource("aws_ecs_service", name), "network_configuration")
        assert network["security_groups"] == [tasks_sg]
        assert network["subnets"] == "${aws_subnet.private[*].id}"
        assert network["assign_public_ip"] is False
    assert resource("aws_db_instance", "main")["vpc_security_group_ids"] == [
        ref("aws_security_group", "rds")
    ]
    assert resource("aws_elasticache_replication_group", "redis")["security_group_ids"] == [
        ref("aws_security_group", "redis")
    ]
    alb = resource("aws_lb", "main")
    assert alb["security_groups"] == [ref("aws_security_group", "alb")]
    assert alb["subnets"] == "${aws_subnet.public[*].id}"
    assert resource("aws_db_subnet_group", "main")["subnet_ids"] == "${aws_subnet.private[*].id}"
    assert (
        resource("aws_elasticache_subnet_group", "redis")["subnet_ids"]
        == "${aws_subnet.private[*].id}"
    )


# --- Network ---------------------------------------------------------------------------


def test_two_az_network_with_configurable_nat() -> None:
    assert resource("aws_subnet", "public")["count"] == "${length(local.azs)}"
    assert resource("aws_subnet", "private")["count"] == "${length(local.azs)}"
    assert "slice(data.aws_availability_zones.available.names, 0, 2)" in locals_()["azs"]
    assert resource("aws_subnet", "public")["map_public_ip_on_launch"] is False
    nat = resource("aws_nat_gateway", "main")
    assert nat["count"] == "${var.nat_gateway_per_az ? length(local.azs) : 1}"
    assert variables()["nat_gateway_per_az"]["default"] is False
    assert "aws_flow_log" in {rtype for rtype, _ in resources()}


# --- Load balancer ---------------------------------------------------------------------


def test_target_group_checks_ping_on_port_8000_by_ip() -> None:
    group = resource("aws_lb_target_group", "api")
    assert resolve(group["port"]) == 8000
    assert unquote(group["target_type"]) == "ip"
    check = one_block(group, "health_check")
    assert unquote(check["path"]) == "/ping"
    assert unquote(check["matcher"]) == "200"


def test_https_with_redirect_when_a_domain_is_set() -> None:
    https = resource("aws_lb_listener", "https")
    assert https["count"] == "${local.https_enabled ? 1 : 0}"
    assert resolve(https["port"]) == 443
    assert unquote(https["protocol"]) == "HTTPS"
    assert "aws_acm_certificate_validation.api" in https["certificate_arn"]
    http = resource("aws_lb_listener", "http")
    assert "count" not in http, "port 80 is always served (forward or redirect)"
    assert resolve(http["port"]) == 80
    action = one_block(http, "default_action")
    assert action["type"] == '${local.https_enabled ? "redirect" : "forward"}'
    assert action["target_group_arn"] == (
        "${local.https_enabled ? null : aws_lb_target_group.api.arn}"
    )
    (redirect,) = action["dynamic"][0].values()
    assert redirect["for_each"] == "${local.https_enabled ? [1] : []}"
    target = clean(redirect["content"][0])
    assert {key: unquote(value) for key, value in target.items()} == {
        "protocol": "HTTPS",
        "port": "443",
        "status_code": "HTTP_301",
    }
    assert set(resources_of("aws_lb_listener")) == {"http", "https"}
    assert locals_()["https_enabled"] == '${var.domain_name != ""}'
    certificate = resource("aws_acm_certificate", "api")
    assert unquote(certificate["validation_method"]) == "DNS"
    for name in ("acm_validation", "api"):
        record = resource("aws_route53_record", name)
        assert record["count"] == "${local.manage_dns ? 1 : 0}"
    assert "var.route53_zone_id" in locals_()["manage_dns"]


# --- ECS -------------------------------------------------------------------------------


def containers(task: str, *, resolved: bool = True) -> list[dict[str, Any]]:
    """The task's container definitions; `resolved` evaluates var./local. references."""
    definitions = resource("aws_ecs_task_definition", task)["container_definitions"]
    parsed_definitions = parse_call_argument(definitions, "jsonencode")
    if not resolved:
        return [clean(container) for container in parsed_definitions]
    found: list[dict[str, Any]] = resolve(parsed_definitions)
    return found


def test_task_definitions_run_the_contracted_containers() -> None:
    (api,) = containers("api")
    (worker,) = containers("worker")
    assert api["name"] == "backend"
    assert api["command"] == ["mtai", "serve", "--no-migrate"]
    assert api["portMappings"] == [{"containerPort": 8000, "protocol": "tcp"}]
    assert worker["name"] == "worker"
    assert worker["command"] == ["mtai", "worker"]
    assert "portMappings" not in worker
    (migrate,) = containers("migrate")
    assert migrate["name"] == "migrate"
    assert migrate["command"] == ["mtai", "migrate", "--create-logins"]
    assert "portMappings" not in migrate
    for container in (api, worker, migrate):
        assert container["essential"] is True
    for task in ("api", "worker", "migrate"):
        (raw,) = containers(task, resolved=False)
        assert raw["image"] == "${local.image}"
    image = unquote(locals_()["image"])
    assert image == "${aws_ecr_repository.app.repository_url}:${var.image_tag}"
    assert unquote(variables()["image_tag"]["default"]) == "bootstrap"


def test_containers_log_to_the_ecs_group_with_the_ecs_prefix() -> None:
    for task in ("api", "worker"):
        (container,) = containers(task)
        logging = container["logConfiguration"]
        assert logging["logDriver"] == "awslogs"
        assert logging["options"]["awslogs-stream-prefix"] == "ecs"
        assert logging["options"]["awslogs-group"] == "${aws_cloudwatch_log_group.app.name}"


CONCAT_RE = re.compile(r"\$\{concat\(((?:local\.\w+)(?:, local\.\w+)*)\)\}")
APP_SECRETS = {
    "DATABASE_URL": '${aws_secretsmanager_secret.app["database-url"].arn}',
    "MTAI_PLATFORM_DATABASE_URL": '${aws_secretsmanager_secret.app["platform-database-url"].arn}',
    "REDIS_URL": '${aws_secretsmanager_secret.app["redis-url"].arn}',
    "MTAI_JWT_SECRET": '${aws_secretsmanager_secret.app["jwt-secret"].arn}',
    "MTAI_KEY_PEPPER": '${aws_secretsmanager_secret.app["key-pepper"].arn}',
    "MTAI_ENCRYPTION_KEY": '${aws_secretsmanager_secret.app["encryption-key"].arn}',
    "MTAI_METRICS_TOKEN": '${aws_secretsmanager_secret.app["metrics-token"].arn}',
}
ADMIN_PASSWORD_SECRET = '${aws_secretsmanager_secret.app["admin-password"].arn}'
MIGRATION_URL_SECRET = '${aws_secretsmanager_secret.app["migration-database-url"].arn}'


def list_locals(expression: str) -> list[str]:
    """The local names behind a container's `environment` or `secrets`: `local.X` or
    `local.X` = `concat(local.A, local.B, ...)`, expanded."""
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    assert match, f"expected a local, got {expression}"
    value = locals_()[match.group(1)]
    if isinstance(value, list):
        return [match.group(1)]
    concat = CONCAT_RE.fullmatch(value)
    assert concat, f"local.{match.group(1)} should be a list or a concat of locals: {value}"
    return [part.removeprefix("local.") for part in concat.group(1).split(", ")]


def container_settings(task: str, key: str) -> tuple[list[str], dict[str, Any]]:
    """(local names, {name: value}) of a container's environment or secrets; the value of
    an `environment` entry is `value`, of a `secrets` entry `valueFrom`. The for-expression
    local `extra_environment` (var.extra_environment) is named but not evaluated."""
    (raw,) = containers(task, resolved=False)
    names = list_locals(raw[key])
    field = "value" if key == "environment" else "valueFrom"
    found: dict[str, Any] = {}
    for name in names:
        if name == "extra_environment":
            continue
        for item in locals_()[name]:
            entry = unquote(item["name"])
            assert entry not in found, f"{task}: {entry} set twice"
            found[entry] = item[field]
    return names, found


def test_containers_get_the_contracted_environment_and_secrets() -> None:
    raw_environment = {
        unquote(item["name"]): item["value"] for item in locals_()["app_environment"]
    }
    # Only the ALB, inside the VPC, may set X-Forwarded-For.
    assert raw_environment["MTAI_FORWARDED_ALLOW_IPS"] == "${var.vpc_cidr}"
    for task in ("api", "worker"):
        _, raw = container_settings(task, "environment")
        environment = resolve(raw)
        assert environment["MTAI_ENV"] == "production"
        assert environment["MTAI_HOST"] == "0.0.0.0"  # noqa: S104 - the container's bind
        assert environment["MTAI_PORT"] == "${tostring(local.app_port)}"
        assert environment["MTAI_WORKERS"] == "${tostring(var.mtai_workers)}"
        assert environment["MTAI_STORAGE_BACKEND"] == "s3"
        assert environment["MTAI_S3_BUCKET"] == ref("aws_s3_bucket", "storage")
        assert environment["MTAI_QUEUE_BACKEND"] == "redis"
        assert environment["MTAI_LOG_LEVEL"] == "INFO"
        assert {"MTAI_S3_REGION", "AWS_REGION"} <= set(environment)
        _, secrets = container_settings(task, "secrets")
        expected = dict(APP_SECRETS)
        if task == "api":
            expected["MTAI_BOOTSTRAP_ADMIN_PASSWORD"] = ADMIN_PASSWORD_SECRET
        assert secrets == expected
        assert not set(secrets) & set(environment)
    assert variables()["mtai_workers"]["default"] == 2


def test_the_app_logs_in_as_its_own_logins_and_only_migrate_gets_the_master() -> None:
    """Finding 11: DATABASE_URL of the API and the worker is not the RDS master (who owns the
    schema and could switch off row-level security); the migrate task alone gets the master."""
    values = {unquote(key): value for key, value in locals_()["secret_values"].items()}
    assert values["database-url"] == "${local.database_url}"
    assert values["platform-database-url"] == "${local.platform_database_url}"
    assert values["migration-database-url"] == "${local.migration_database_url}"
    master = ("${var.db_username}", "${random_password.db.result}")
    logins = {
        "database_url": ("${local.db_tenant_login}", "${random_password.db_tenant_login.result}"),
        "platform_database_url": (
            "${local.db_platform_login}",
            "${random_password.db_platform_login.result}",
        ),
    }
    for name, (user, password) in logins.items():
        url = unquote(locals_()[name])
        assert url == f"postgresql://{user}:{password}@${{local.database_location}}", name
        assert not any(part in url for part in master), f"local.{name} uses the master login"
    tenant_login = unquote(locals_()["db_tenant_login"])
    platform_login = unquote(locals_()["db_platform_login"])
    assert len({tenant_login, platform_login, "mtai_app", "mtai_app_platform"}) == 4
    for task in ("api", "worker"):
        _, secrets = container_settings(task, "secrets")
        assert MIGRATION_URL_SECRET not in secrets.values(), task
        assert '${aws_secretsmanager_secret.app["database-password"].arn}' not in (secrets.values())
    _, migrate_secrets = container_settings("migrate", "secrets")
    assert migrate_secrets == {
        "MTAI_DATABASE_MIGRATION_URL": MIGRATION_URL_SECRET,
        "DATABASE_URL": APP_SECRETS["DATABASE_URL"],
        "MTAI_PLATFORM_DATABASE_URL": APP_SECRETS["MTAI_PLATFORM_DATABASE_URL"],
    }
    (run_task,) = [
        statement
        for statement in policy_statements("codebuild")
        if "ecs:RunTask" in map(unquote, statement["actions"])
    ]
    assert list(map(unquote, run_task["resources"])) == [
        "${local.ecs_arn_prefix}:task-definition/${local.migrate_task_family}:*"
    ]


def test_only_the_api_bootstraps_an_admin_from_its_secret_and_no_demo_tenant() -> None:
    _, api = container_settings("api", "environment")
    # Empty: no demo tenant, so no demo API key is printed to the logs in production.
    assert api["MTAI_BOOTSTRAP_DEMO_TENANT"] == '""'
    assert resolve(api["MTAI_BOOTSTRAP_DEMO_TENANT"]) == ""
    assert api["MTAI_BOOTSTRAP_ADMIN_EMAIL"] == "${var.admin_email}"
    assert unquote(variables()["admin_email"]["default"]) == "admin@mtai.local"
    (validation,) = blocks(variables()["admin_email"], "validation")
    assert "regex(" in validation["condition"]
    _, api_secrets = container_settings("api", "secrets")
    assert api_secrets["MTAI_BOOTSTRAP_ADMIN_PASSWORD"] == ADMIN_PASSWORD_SECRET
    _, worker = container_settings("worker", "environment")
    _, worker_secrets = container_settings("worker", "secrets")
    assert not {name for name in worker if name.startswith("MTAI_BOOTSTRAP_")}
    assert "MTAI_BOOTSTRAP_ADMIN_PASSWORD" not in worker_secrets


def test_metrics_need_the_token_in_both_tasks() -> None:
    for task in ("api", "worker"):
        _, secrets = container_settings(task, "secrets")
        assert secrets["MTAI_METRICS_TOKEN"] == (
            '${aws_secretsmanager_secret.app["metrics-token"].arn}'
        )


def test_pool_size_comes_from_the_variable_and_fits_the_database() -> None:
    for task in ("api", "worker"):
        _, environment = container_settings(task, "environment")
        assert environment["MTAI_DB_POOL_SIZE"] == "${tostring(var.db_pool_size)}"
    pool = variables()["db_pool_size"]
    assert pool["default"] == 5
    description = unquote(pool["description"])
    for name in ("api_max_count", "mtai_workers", "worker_max_count", "max_connections"):
        assert name in description, name
    worst = locals_()["db_connections_worst_case"]
    assert worst == (
        "${(var.api_max_count * var.mtai_workers + var.worker_max_count) * 2 * "
        "(var.db_pool_size + var.db_platform_pool_size)}"
    )
    for task in ("api", "worker"):
        _, environment = container_settings(task, "environment")
        assert environment["MTAI_DB_PLATFORM_POOL_SIZE"] == (
            "${tostring(var.db_platform_pool_size)}"
        )
    for name in ("api_max_count", "worker_max_count", "mtai_workers", "db_instance_class"):
        assert name in variables()
    (check,) = list(top_blocks("check"))
    (assertion,) = blocks(check['"database_connections"'], "assert")
    assert "local.db_connections_worst_case" in assertion["condition"]
    assert "local.db_max_connections[var.db_instance_class]" in assertion["condition"]
    limits = {unquote(key): value for key, value in locals_()["db_max_connections"].items()}
    assert limits["db.t4g.micro"] <= 100
    # The defaults fit the default instance class.
    defaults = {
        name: variables()[name]["default"]
        for name in (
            "api_max_count",
            "mtai_workers",
            "worker_max_count",
            "db_pool_size",
            "db_platform_pool_size",
        )
    }
    used = (
        (defaults["api_max_count"] * defaults["mtai_workers"] + defaults["worker_max_count"])
        * 2
        * (defaults["db_pool_size"] + defaults["db_platform_pool_size"])
    )
    assert used < limits[unquote(variables()["db_instance_class"]["default"])]


def test_extra_environment_comes_last_and_refuses_terraform_and_secret_names() -> None:
    terraform_set: set[str] = set()
    for task in ("api", "worker"):
        names, environment = container_settings(task, "environment")
        assert names[-1] == "extra_environment"
        assert names.count("extra_environment") == 1
        _, secrets = container_settings(task, "secrets")
        terraform_set |= set(environment) | set(secrets)
    assert "var.extra_environment" in locals_()["extra_environment"]
    variable = variables()["extra_environment"]
    assert variable["default"] == {}
    conditions = [validation["condition"] for validation in blocks(variable, "validation")]
    refused = {name for text in conditions for name in re.findall(r'"([A-Z][A-Z0-9_]+)"', text)}
    assert terraform_set <= refused, "extra_environment may override names Terraform sets"
    (secretish,) = [text for text in conditions if "PASSWORD|" in text]
    for word in (
        "PASSWORD", "SECRET", "TOKEN", "KEY_PEPPER", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL",
    ):  # fmt: skip
        assert word in secretish, word


def test_services_leave_image_and_count_to_the_deploy_scripts() -> None:
    for name in ("api", "worker"):
        service = resource("aws_ecs_service", name)
        lifecycle = one_block(service, "lifecycle")
        assert set(lifecycle["ignore_changes"]) >= {"task_definition", "desired_count"}
        breaker = one_block(service, "deployment_circuit_breaker")
        assert breaker == {"enable": True, "rollback": True}
        assert unquote(service["launch_type"]) == "FARGATE"
    # Startup imports the app and loads the embedding model; the image's HEALTHCHECK allows 90 s.
    assert resource("aws_ecs_service", "api")["health_check_grace_period_seconds"] >= 90
    balancer = one_block(resource("aws_ecs_service", "api"), "load_balancer")
    assert resolve(balancer["container_name"]) == "backend"
    assert resolve(balancer["container_port"]) == 8000


def test_autoscaling_tracks_cpu_for_both_and_requests_for_the_api() -> None:
    metrics = {}
    for name, policy in resources_of("aws_appautoscaling_policy").items():
        configuration = one_block(policy, "target_tracking_scaling_policy_configuration")
        metric = one_block(configuration, "predefined_metric_specification")
        metrics[name] = unquote(metric["predefined_metric_type"])
    assert metrics == {
        "api_cpu": "ECSServiceAverageCPUUtilization",
        "api_requests": "ALBRequestCountPerTarget",
        "worker_cpu": "ECSServiceAverageCPUUtilization",
    }
    settings = one_block(resource("aws_ecs_cluster", "main"), "setting")
    assert settings == {"name": '"containerInsights"', "value": '"enabled"'}


# --- Data stores -----------------------------------------------------------------------


def test_rds_is_private_encrypted_backed_up_and_protected() -> None:
    db = resource("aws_db_instance", "main")
    assert unquote(db["engine"]) == "postgres"
    assert db["engine_version"] == "${var.db_engine_version}"
    assert db["storage_encrypted"] is True
    assert db["publicly_accessible"] is False
    assert db["skip_final_snapshot"] is False
    assert "final_snapshot_identifier" in db
    assert db["deletion_protection"] == "${var.deletion_protection}"
    assert variables()["deletion_protection"]["default"] is True
    assert db["backup_retention_period"] == "${var.db_backup_retention_days}"
    assert variables()["db_backup_retention_days"]["default"] == 7
    assert db["multi_az"] == "${var.db_multi_az}"
    assert db["password"] == "${random_password.db.result}"
    major = unquote(variables()["db_engine_version"]["default"]).split(".")[0]
    assert int(major) >= 15, "pgvector 0.8 needs PostgreSQL 15.9+, 16.5+ or 17.1+ on RDS"


def test_redis_encrypts_in_transit_and_at_rest_with_auth() -> None:
    redis = resource("aws_elasticache_replication_group", "redis")
    assert redis["transit_encryption_enabled"] is True
    assert redis["at_rest_encryption_enabled"] is True
    assert redis["auth_token"] == "${random_password.redis_auth.result}"
    assert unquote(redis["engine"]) == "redis"


def test_generated_credentials_are_url_safe() -> None:
    url_safe = set("-_.~")
    passwords = resources_of("random_password")
    assert {
        "db", "redis_auth", "jwt_secret", "key_pepper", "encryption_key", "admin_password",
        "metrics_token",
    } <= set(passwords)  # fmt: skip
    for name, body in passwords.items():
        if body.get("special", True) is not False:
            allowed = set(unquote(body["override_special"]))
            assert allowed <= url_safe, f"random_password.{name} may produce URL-unsafe text"
        assert body["length"] >= 32, f"random_password.{name} is too short"
    assert passwords["encryption_key"]["length"] == 48
    assert passwords["admin_password"]["length"] == 32
    assert passwords["metrics_token"]["length"] == 48
    assert 16 <= passwords["redis_auth"]["length"] <= 128
    assert {"db_tenant_login", "db_platform_login"} <= set(passwords)
    location = locals_()["database_location"]
    assert location == '"${aws_db_instance.main.address}:5432/${var.db_name}"'
    migration_url = locals_()["migration_database_url"]
    assert migration_url == (
        '"postgresql://${var.db_username}:${random_password.db.result}@${local.database_location}"'
    )
    redis_url = locals_()["redis_url"]
    assert redis_url == (
        '"rediss://:${random_password.redis_auth.result}@'
        '${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379/0"'
    )


def test_secrets_manager_holds_the_contracted_secrets() -> None:
    secret = resource("aws_secretsmanager_secret", "app")
    assert unquote(secret["name"]) == "${local.name}/${each.key}"
    assert secret["recovery_window_in_days"] == "${var.secret_recovery_window_days}"
    assert set(map(unquote, locals_()["secret_descriptions"])) == {
        "database-password",
        "database-url",
        "platform-database-url",
        "migration-database-url",
        "redis-url",
        "jwt-secret",
        "key-pepper",
        "encryption-key",
        "admin-password",
        "metrics-token",
    }
    assert set(locals_()["secret_values"]) == set(locals_()["secret_descriptions"])
    values = {unquote(key): value for key, value in locals_()["secret_values"].items()}
    assert values["admin-password"] == "${random_password.admin_password.result}"
    assert values["metrics-token"] == "${random_password.metrics_token.result}"
    # One resource for all: the same KMS key and recovery window for the new secrets too.
    assert secret["kms_key_id"] == ref("aws_kms_key", "main", "arn")
    assert secret["for_each"] == "${local.secret_descriptions}"


# --- S3 --------------------------------------------------------------------------------


def test_every_bucket_is_private_versioned_and_encrypted() -> None:
    buckets = set(resources_of("aws_s3_bucket"))
    assert "storage" in buckets
    for kind in (
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_policy",
        "aws_s3_bucket_lifecycle_configuration",
    ):
        configured = {
            name
            for name, body in resources_of(kind).items()
            if body["bucket"] == ref("aws_s3_bucket", name)
        }
        assert configured == buckets, f"{kind} missing for {buckets - configured}"
    for name in buckets:
        block = resource("aws_s3_bucket_public_access_block", name)
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ):
            assert block[flag] is True, f"{name}: {flag}"
        versioning = one_block(
            resource("aws_s3_bucket_versioning", name), "versioning_configuration"
        )
        assert unquote(versioning["status"]) == "Enabled"
        rule = one_block(
            resource("aws_s3_bucket_server_side_encryption_configuration", name), "rule"
        )
        default = one_block(rule, "apply_server_side_encryption_by_default")
        assert unquote(default["sse_algorithm"]) in {"AES256", "aws:kms"}
        ownership = one_block(resource("aws_s3_bucket_ownership_controls", name), "rule")
        assert unquote(ownership["object_ownership"]) == "BucketOwnerEnforced"
        # Destroy keeps non-empty buckets unless the variable says otherwise.
        assert resource("aws_s3_bucket", name)["force_destroy"] == "${var.force_destroy_buckets}"
    assert variables()["force_destroy_buckets"]["default"] is False


def test_bucket_policies_deny_plain_http() -> None:
    for name, policy in resources_of("aws_s3_bucket_policy").items():
        match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", policy["policy"])
        assert match, f"bucket policy {name} should come from a policy document"
        document = data_sources()[("aws_iam_policy_document", match.group(1))]
        denies = [
            statement
            for statement in blocks(document, "statement")
            if unquote(statement.get("effect", '"Allow"')) == "Deny"
        ]
        assert any(
            unquote(condition["variable"]) == "aws:SecureTransport"
            and [unquote(value) for value in condition["values"]] == ["false"]
            for statement in denies
            for condition in blocks(statement, "condition")
        ), f"bucket {name} does not deny insecure transport"


def test_storage_lifecycle_expires_old_versions_and_aborts_uploads() -> None:
    rules = blocks(resource("aws_s3_bucket_lifecycle_configuration", "storage"), "rule")
    noncurrent = [
        block for rule in rules for block in blocks(rule, "noncurrent_version_expiration")
    ]
    assert [block["noncurrent_days"] for block in noncurrent] == [
        "${var.s3_noncurrent_version_expiration_days}"
    ]
    assert any(blocks(rule, "abort_incomplete_multipart_upload") for rule in rules)
    for rule in rules:
        assert unquote(rule["status"]) == "Enabled"


# --- ECR -------------------------------------------------------------------------------


def test_ecr_lifecycle_matches_the_sha_tags_the_build_pushes() -> None:
    repository = resource("aws_ecr_repository", "app")
    assert one_block(repository, "image_scanning_configuration")["scan_on_push"] is True
    policy = resource("aws_ecr_lifecycle_policy", "app")["policy"]
    rules = resolve(parse_call_argument(policy, "jsonencode"))["rules"]
    by_status = {rule["selection"]["tagStatus"]: rule for rule in rules}
    assert set(by_status) == {"untagged", "tagged"}
    tagged = by_status["tagged"]["selection"]
    assert tagged["tagPrefixList"] == ["sha-"]
    assert tagged["countType"] == "imageCountMoreThan"
    assert tagged["countNumber"] == 30
    untagged = by_status["untagged"]["selection"]
    assert (untagged["countType"], untagged["countUnit"], untagged["countNumber"]) == (
        "sinceImagePushed",
        "days",
        7,
    )
    assert all(rule["action"]["type"] == "expire" for rule in rules)
    assert "bootstrap" not in policy, "the lifecycle must not depend on the bootstrap tag"


# --- IAM -------------------------------------------------------------------------------


def policy_statements(document: str) -> list[dict[str, Any]]:
    return blocks(data_sources()[("aws_iam_policy_document", document)], "statement")


def test_task_role_is_limited_to_its_bucket_and_bedrock() -> None:
    grants: dict[str, set[str]] = {}
    for statement in policy_statements("ecs_task"):
        assert unquote(statement.get("effect", '"Allow"')) == "Allow"
        for action in statement["actions"]:
            grants.setdefault(unquote(action), set()).update(map(unquote, statement["resources"]))
    assert set(grants) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
    }
    assert grants["s3:GetObject"] == {"${aws_s3_bucket.storage.arn}/*"}
    assert grants["s3:ListBucket"] == {ref("aws_s3_bucket", "storage", "arn")}
    assert all(
        ":foundation-model/" in r or ":inference-profile/" in r
        for r in grants["bedrock:InvokeModel"]
    )


def test_execution_role_reads_exactly_the_injected_secrets() -> None:
    (statement,) = [
        statement
        for statement in policy_statements("ecs_execution")
        if "secretsmanager:GetSecretValue" in map(unquote, statement["actions"])
    ]
    assert statement["resources"] == (
        "${[for key in local.injected_secret_keys : aws_secretsmanager_secret.app[key].arn]}"
    )
    assert set(map(unquote, locals_()["injected_secret_keys"])) == {
        "database-url",
        "platform-database-url",
        "migration-database-url",
        "redis-url",
        "jwt-secret",
        "key-pepper",
        "encryption-key",
        "metrics-token",
        "admin-password",
    }
    injected = set(APP_SECRETS.values()) | {ADMIN_PASSWORD_SECRET, MIGRATION_URL_SECRET}
    keys: set[str] = set()
    for arn in injected:
        match = re.search(r'app\["([a-z-]+)"\]', arn)
        assert match, arn
        keys.add(match.group(1))
    assert keys == set(map(unquote, locals_()["injected_secret_keys"]))


def test_no_policy_grants_wildcard_actions() -> None:
    for (rtype, name), document in data_sources().items():
        if rtype != "aws_iam_policy_document":
            continue
        for statement in blocks(document, "statement"):
            deny = unquote(statement.get("effect", '"Allow"')) == "Deny"
            for action in map(unquote, statement["actions"]):
                if deny:
                    continue
                assert "*" not in action, f"{name}: wildcard action {action}"


# --- CodeBuild -------------------------------------------------------------------------


def test_codebuild_builds_with_docker_and_gets_its_values_as_environment() -> None:
    project = resource("aws_codebuild_project", "backend")
    environment = one_block(project, "environment")
    assert environment["privileged_mode"] is True
    source = one_block(project, "source")
    assert '"buildspec.yml"' in source["buildspec"]
    assert "var.github_repository_url" in source["location"]
    passed = set(locals_()["codebuild_environment"])
    assert {
        "ECR_REPOSITORY_URL",
        "ECS_CLUSTER_NAME",
        "ECS_SERVICE_NAME",
        "WORKER_SERVICE_NAME",
        "API_TASK_FAMILY",
        "WORKER_TASK_FAMILY",
        "MIGRATE_TASK_FAMILY",
        "MIGRATE_CONTAINER_NAME",
        "CONTAINER_NAME",
        "PRIVATE_SUBNET_IDS",
        "SECURITY_GROUP_ID",
        "ALB_DNS_NAME",
        "APP_URL",
        "LOG_GROUP_NAME",
    } <= passed


# --- No secrets in tracked files -------------------------------------------------------


def test_tfvars_example_sets_the_basics_and_no_secret() -> None:
    path = TF_DIR / "terraform.tfvars.example"
    with path.open(encoding="utf-8") as handle:
        values = clean(hcl2.load(handle))
    assert {"project_name", "aws_region", "domain_name"} <= set(values)
    assert set(values) <= set(variables()), "the example sets variables that do not exist"
    secretish = re.compile(r"password|secret|token|pepper|key", re.IGNORECASE)
    assert [name for name in values if secretish.search(name)] == []
    assignment = re.compile(r"^\s*[\w-]*(password|secret|token)[\w-]*\s*=", re.I | re.M)
    assert assignment.search(path.read_text(encoding="utf-8")) is None


@pytest.mark.parametrize(
    "pattern",
    [
        r"password\s*=\s*\"",
        r"(auth_token|secret_string|jwt_secret|key_pepper)\s*=\s*\"",
        r"AKIA[0-9A-Z]{16}",
    ],
)
def test_no_literal_secret_in_terraform_files(pattern: str) -> None:
    compiled = re.compile(pattern, re.IGNORECASE)
    checked = 0
    for path in sorted(TF_DIR.rglob("*")):
        if not path.is_file() or ".terraform" in path.parts or "tfstate" in path.name:
            continue
        checked += 1
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not compiled.search(line), f"{path.name}:{number}: {line.strip()}"
    assert checked >= len(tf_files())
