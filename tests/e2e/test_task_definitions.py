"""Task definitions: register, describe, list, deregister, delete."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from botocore.exceptions import ClientError

from conftest import EXAMPLES, error_of, fargate_taskdef, unique

WEB_JSON = EXAMPLES / "web.json"


def register(ecs, family: str, **overrides):
    return ecs.register_task_definition(**fargate_taskdef(family, **overrides))["taskDefinition"]


def test_readme_flow_register_and_describe_web(aws, berth):
    reg = aws.ok("ecs", "register-task-definition", "--cli-input-json", f"file://{WEB_JSON}")
    td = reg["taskDefinition"]
    m = re.fullmatch(r"arn:aws:ecs:us-east-1:(\d{12}):task-definition/web:(\d+)", td["taskDefinitionArn"])
    assert m, td["taskDefinitionArn"]
    assert m.group(1) == berth.account
    revision = int(m.group(2))
    assert td["revision"] == revision
    assert reg["tags"] == [{"key": "app", "value": "web"}]

    out = aws.ok("ecs", "describe-task-definition", "--task-definition", "web")
    d = out["taskDefinition"]
    assert d["taskDefinitionArn"] == berth.taskdef_arn("web", revision)
    assert d["taskDefinitionArn"].endswith(f"task-definition/web:{revision}")
    assert d["family"] == "web"
    assert d["revision"] == revision
    assert d["status"] == "ACTIVE"
    assert d["cpu"] == "256"
    assert d["memory"] == "512"
    assert d["networkMode"] == "awsvpc"
    assert "FARGATE" in d["compatibilities"]
    assert d["requiresCompatibilities"] == ["FARGATE"]
    assert d["registeredAt"]
    assert "registeredBy" in d
    [c] = d["containerDefinitions"]
    assert c["name"] == "web"
    assert c["image"] == "busybox:latest"
    assert c["essential"] is True
    assert c["command"] == ["httpd", "-f", "-v", "-p", "8080", "-h", "/srv"]
    assert c["environment"] == [{"name": "GREETING", "value": "hello from berth"}]
    assert c["portMappings"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}]
    hc = c["healthCheck"]
    assert (hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"]) == (10, 3, 3, 5)
    # Tags only with --include TAGS.
    assert not out.get("tags")
    tagged = aws.ok("ecs", "describe-task-definition", "--task-definition", "web", "--include", "TAGS")
    assert tagged["tags"] == [{"key": "app", "value": "web"}]

    # Registering the same file again makes the next revision.
    again = aws.ok("ecs", "register-task-definition", "--cli-input-json", f"file://{WEB_JSON}")
    assert again["taskDefinition"]["revision"] == revision + 1
    latest = aws.ok("ecs", "describe-task-definition", "--task-definition", "web")
    assert latest["taskDefinition"]["revision"] == revision + 1


def test_revisions_increment_and_describe_forms(ecs, aws, berth):
    family = unique("rev")
    arns = [register(ecs, family)["taskDefinitionArn"] for _ in range(3)]
    assert arns == [berth.taskdef_arn(family, n) for n in (1, 2, 3)]

    for n in (1, 2, 3):
        by_rev = ecs.describe_task_definition(taskDefinition=f"{family}:{n}")["taskDefinition"]
        assert (by_rev["revision"], by_rev["taskDefinitionArn"]) == (n, arns[n - 1])
        by_arn = ecs.describe_task_definition(taskDefinition=arns[n - 1])["taskDefinition"]
        assert by_arn["revision"] == n
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 3

    cli = aws.ok("ecs", "describe-task-definition", "--task-definition", arns[1])["taskDefinition"]
    assert cli["taskDefinitionArn"] == arns[1]


def test_describe_missing_task_definition(ecs):
    family = unique("nope")
    for ident in (family, f"{family}:1"):
        with pytest.raises(ClientError) as e:
            ecs.describe_task_definition(taskDefinition=ident)
        code, status, _ = error_of(e)
        assert (code, status) == ("ClientException", 400), ident

    existing = unique("one")
    register(ecs, existing)
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=f"{existing}:7")
    assert error_of(e)[:2] == ("ClientException", 400)


def test_deregister_then_family_resolves_to_latest_active(ecs, aws, berth):
    family = unique("dereg")
    for _ in range(3):
        register(ecs, family)

    out = aws.ok("ecs", "deregister-task-definition", "--task-definition", f"{family}:3")["taskDefinition"]
    assert out["taskDefinitionArn"] == berth.taskdef_arn(family, 3)
    assert out["status"] == "INACTIVE"
    assert out["deregisteredAt"]

    # The inactive revision is still describable; the family resolves to :2.
    three = ecs.describe_task_definition(taskDefinition=f"{family}:3")["taskDefinition"]
    assert three["status"] == "INACTIVE"
    # botocore parses the timestamps: they are real, recent datetimes.
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((now - three["registeredAt"]).total_seconds()) < 300, three["registeredAt"]
    assert three["registeredAt"] <= three["deregisteredAt"] <= now + dt.timedelta(seconds=60)
    latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert (latest["revision"], latest["status"]) == (2, "ACTIVE")

    # Deregistering by ARN works too.
    by_arn = ecs.deregister_task_definition(taskDefinition=berth.taskdef_arn(family, 2))["taskDefinition"]
    assert by_arn["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1

    # A new registration continues the numbering.
    assert register(ecs, family)["revision"] == 4


def test_deregister_needs_a_revision(ecs):
    family = unique("dereg-bare")
    register(ecs, family)
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition=family)
    code, status, _ = error_of(e)
    assert code in ("ClientException", "InvalidParameterException")
    assert status == 400


def test_deregister_missing_revision(ecs):
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition=f"{unique('dereg-missing')}:1")
    code, status, _ = error_of(e)
    assert code in ("ClientException", "InvalidParameterException")
    assert status == 400


def test_family_without_active_revisions_does_not_resolve(ecs):
    family = unique("all-inactive")
    register(ecs, family)
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=family)
    assert error_of(e)[:2] == ("ClientException", 400)


@pytest.fixture(scope="module")
def listed_family(ecs):
    """A family with revisions 1..4, of which 2 and 4 are deregistered."""
    family = unique("list")
    for _ in range(4):
        register(ecs, family)
    for n in (2, 4):
        ecs.deregister_task_definition(taskDefinition=f"{family}:{n}")
    return family


def test_list_task_definitions_by_family_and_status(ecs, aws, berth, listed_family):
    f = listed_family
    arn = lambda n: berth.taskdef_arn(f, n)  # noqa: E731

    active = aws.ok("ecs", "list-task-definitions", "--family-prefix", f)["taskDefinitionArns"]
    assert active == [arn(1), arn(3)]

    inactive = ecs.list_task_definitions(familyPrefix=f, status="INACTIVE")["taskDefinitionArns"]
    assert inactive == [arn(2), arn(4)]

    desc = ecs.list_task_definitions(familyPrefix=f, sort="DESC")["taskDefinitionArns"]
    assert desc == [arn(3), arn(1)]
    asc = ecs.list_task_definitions(familyPrefix=f, sort="ASC")["taskDefinitionArns"]
    assert asc == [arn(1), arn(3)]

    cli_desc = aws.ok(
        "ecs", "list-task-definitions", "--family-prefix", f, "--status", "INACTIVE", "--sort", "DESC"
    )["taskDefinitionArns"]
    assert cli_desc == [arn(4), arn(2)]


def test_list_task_definitions_family_prefix_is_exact(ecs, berth):
    family = unique("exact")
    register(ecs, family)
    register(ecs, family + "-longer")
    out = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert out == [berth.taskdef_arn(family, 1)]


def test_list_task_definitions_without_prefix_contains_all_families(ecs, berth, listed_family):
    arns = []
    kwargs = {}
    while True:
        out = ecs.list_task_definitions(**kwargs)
        arns += out["taskDefinitionArns"]
        if not out.get("nextToken"):
            break
        kwargs["nextToken"] = out["nextToken"]
    assert berth.taskdef_arn(listed_family, 1) in arns
    assert berth.taskdef_arn(listed_family, 3) in arns
    assert berth.taskdef_arn(listed_family, 2) not in arns


@pytest.mark.parametrize("sort", ["ASC", "DESC"])
def test_list_task_definitions_pagination(ecs, berth, sort):
    family = unique("tdpage")
    for _ in range(5):
        register(ecs, family)
    pages = []
    kwargs = {"familyPrefix": family, "maxResults": 1, "sort": sort}
    while True:
        out = ecs.list_task_definitions(**kwargs)
        assert len(out["taskDefinitionArns"]) <= 1
        pages.append(out["taskDefinitionArns"])
        if not out.get("nextToken"):
            break
        kwargs["nextToken"] = out["nextToken"]
        assert len(pages) < 50
    got = [a for p in pages for a in p]
    want = [berth.taskdef_arn(family, n) for n in range(1, 6)]
    assert got == (want if sort == "ASC" else want[::-1])

    paginator = ecs.get_paginator("list_task_definitions")
    via_paginator = [
        a
        for p in paginator.paginate(familyPrefix=family, sort=sort, PaginationConfig={"PageSize": 2})
        for a in p["taskDefinitionArns"]
    ]
    assert via_paginator == got


def test_list_task_definitions_cli_auto_paginates(aws, ecs, berth):
    family = unique("tdcli")
    for _ in range(3):
        register(ecs, family)
    out = aws.ok("ecs", "list-task-definitions", "--family-prefix", family, "--page-size", "1")
    assert out["taskDefinitionArns"] == [berth.taskdef_arn(family, n) for n in (1, 2, 3)]


@pytest.mark.parametrize("max_results", [0, 101])
def test_list_task_definitions_invalid_max_results(raw, max_results):
    r = raw.send("ListTaskDefinitions", {"maxResults": max_results})
    assert (r.status, r.type) == (400, "InvalidParameterException"), r


@pytest.mark.parametrize("max_results", [0, 101])
def test_list_task_definition_families_invalid_max_results(raw, max_results):
    r = raw.send("ListTaskDefinitionFamilies", {"maxResults": max_results})
    assert (r.status, r.type) == (400, "InvalidParameterException"), r


def test_list_task_definitions_invalid_status_and_sort(raw):
    for body in ({"status": "BOGUS"}, {"sort": "SIDEWAYS"}):
        r = raw.send("ListTaskDefinitions", body)
        assert r.status == 400, (body, r)
        assert r.type in ("InvalidParameterException", "ClientException", "SerializationException"), (body, r)


def test_list_task_definition_families(ecs, aws):
    base = unique("fam")
    active_only = f"{base}-a"
    inactive_only = f"{base}-b"
    mixed = f"{base}-c"
    register(ecs, active_only)
    register(ecs, inactive_only)
    ecs.deregister_task_definition(taskDefinition=f"{inactive_only}:1")
    register(ecs, mixed)
    register(ecs, mixed)
    ecs.deregister_task_definition(taskDefinition=f"{mixed}:1")

    every = aws.ok("ecs", "list-task-definition-families", "--family-prefix", base)["families"]
    assert every == [active_only, inactive_only, mixed]

    assert ecs.list_task_definition_families(familyPrefix=base, status="ALL")["families"] == [
        active_only,
        inactive_only,
        mixed,
    ]
    assert ecs.list_task_definition_families(familyPrefix=base, status="ACTIVE")["families"] == [
        active_only,
        mixed,
    ]
    assert ecs.list_task_definition_families(familyPrefix=base, status="INACTIVE")["families"] == [
        inactive_only
    ]
    # familyPrefix is a real prefix here.
    assert ecs.list_task_definition_families(familyPrefix=f"{base}-c")["families"] == [mixed]
    assert ecs.list_task_definition_families(familyPrefix=unique("nothing"))["families"] == []

    pages = []
    kwargs = {"familyPrefix": base, "maxResults": 1}
    while True:
        out = ecs.list_task_definition_families(**kwargs)
        pages.append(out["families"])
        if not out.get("nextToken"):
            break
        kwargs["nextToken"] = out["nextToken"]
    assert [f for p in pages for f in p] == [active_only, inactive_only, mixed]


def test_delete_task_definitions(ecs, aws, berth):
    family = unique("delete")
    register(ecs, family)
    register(ecs, family)
    ecs.deregister_task_definition(taskDefinition=f"{family}:2")

    # An ACTIVE revision cannot be deleted: it comes back as a failure.
    active = ecs.delete_task_definitions(taskDefinitions=[f"{family}:1"])
    assert active["taskDefinitions"] == []
    [failure] = active["failures"]
    assert failure["arn"] == berth.taskdef_arn(family, 1)
    assert "ACTIVE" in failure["reason"]

    # An INACTIVE one moves to DELETE_IN_PROGRESS.
    out = aws.ok("ecs", "delete-task-definitions", "--task-definitions", berth.taskdef_arn(family, 2))
    assert out["failures"] == []
    [td] = out["taskDefinitions"]
    assert td["taskDefinitionArn"] == berth.taskdef_arn(family, 2)
    assert td["status"] == "DELETE_IN_PROGRESS"

    listed = ecs.list_task_definitions(familyPrefix=family, status="DELETE_IN_PROGRESS")
    assert listed["taskDefinitionArns"] == [berth.taskdef_arn(family, 2)]
    assert ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"] == []
    assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == [berth.taskdef_arn(family, 1)]

    # Both in one call: one success, one failure.
    register(ecs, family)  # :3
    ecs.deregister_task_definition(taskDefinition=f"{family}:3")
    both = ecs.delete_task_definitions(taskDefinitions=[f"{family}:3", f"{family}:1"])
    assert [t["taskDefinitionArn"] for t in both["taskDefinitions"]] == [berth.taskdef_arn(family, 3)]
    assert [f["arn"] for f in both["failures"]] == [berth.taskdef_arn(family, 1)]


def test_delete_task_definitions_missing_revision_is_a_failure(ecs):
    family = unique("delete-missing")
    out = ecs.delete_task_definitions(taskDefinitions=[f"{family}:1"])
    assert out["taskDefinitions"] == []
    assert len(out["failures"]) == 1


@pytest.mark.parametrize(
    "cpu,memory,want_cpu,want_memory",
    [
        ("1 vCPU", "2 GB", "1024", "2048"),
        ("0.5 vCPU", "1 GB", "512", "1024"),
        ("2048", "4096", "2048", "4096"),
    ],
)
def test_human_sizes_are_stored_as_units(ecs, cpu, memory, want_cpu, want_memory):
    family = unique("sizes")
    td = register(ecs, family, cpu=cpu, memory=memory)
    assert (td["cpu"], td["memory"]) == (want_cpu, want_memory)
    d = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert (d["cpu"], d["memory"]) == (want_cpu, want_memory)


@pytest.mark.parametrize(
    "cpu,memory",
    [
        ("256", "512"), ("256", "1024"), ("256", "2048"),
        ("512", "1024"), ("512", "4096"),
        ("1024", "2048"), ("1024", "8192"),
        ("2048", "4096"), ("2048", "16384"),
        ("4096", "8192"), ("4096", "30720"),
        ("8192", "16384"), ("8192", "20480"), ("8192", "61440"),
        ("16384", "32768"), ("16384", "40960"), ("16384", "122880"),
    ],
)
def test_fargate_size_table_accepts_valid_combinations(ecs, cpu, memory):
    td = register(ecs, unique("ok-size"), cpu=cpu, memory=memory)
    assert (td["cpu"], td["memory"]) == (cpu, memory)


def test_stored_defaults(ecs):
    family = unique("defaults")
    td = register(
        ecs,
        family,
        containerDefinitions=[
            {
                "name": "app",
                "image": "busybox:latest",
                "portMappings": [{"containerPort": 9000}, {"containerPort": 9001, "protocol": "udp"}],
                "healthCheck": {"command": ["CMD-SHELL", "true"]},
            }
        ],
    )
    [c] = td["containerDefinitions"]
    assert c["essential"] is True
    assert c["portMappings"] == [
        {"containerPort": 9000, "hostPort": 9000, "protocol": "tcp"},
        {"containerPort": 9001, "hostPort": 9001, "protocol": "udp"},
    ]
    hc = c["healthCheck"]
    assert (hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"]) == (30, 5, 3, 0)
    assert td["status"] == "ACTIVE"
    assert td["revision"] == 1
    assert "FARGATE" in td["compatibilities"]


def test_register_with_tags_and_describe_include(ecs):
    family = unique("tags")
    out = ecs.register_task_definition(
        **fargate_taskdef(family), tags=[{"key": "k1", "value": "v1"}, {"key": "k2", "value": "v2"}]
    )
    assert sorted(t["key"] for t in out["tags"]) == ["k1", "k2"]
    plain = ecs.describe_task_definition(taskDefinition=family)
    assert not plain.get("tags")
    tagged = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
    assert sorted((t["key"], t["value"]) for t in tagged["tags"]) == [("k1", "v1"), ("k2", "v2")]


def test_dependencies_that_are_valid(ecs):
    family = unique("deps")
    td = register(
        ecs,
        family,
        containerDefinitions=[
            {
                "name": "db",
                "image": "postgres:16",
                "essential": False,
                "healthCheck": {"command": ["CMD-SHELL", "pg_isready"]},
            },
            {"name": "init", "image": "busybox", "essential": False},
            {
                "name": "app",
                "image": "busybox",
                "dependsOn": [
                    {"containerName": "db", "condition": "HEALTHY"},
                    {"containerName": "init", "condition": "SUCCESS"},
                ],
            },
        ],
    )
    assert [c["name"] for c in td["containerDefinitions"]] == ["db", "init", "app"]


def test_concurrent_registrations_get_distinct_revisions(berth):
    """Parallel RegisterTaskDefinition calls on one family never share or skip
    a revision. AWS may refuse some of them with a 400 ClientException ("Too
    many concurrent attempts to create a new revision of the specified
    family."), which clients retry; a 5xx is never acceptable."""
    from concurrent.futures import ThreadPoolExecutor

    family = unique("race")
    clients = [berth.boto3_client() for _ in range(16)]

    def work(client):
        results = []
        for _ in range(4):
            try:
                results.append(client.register_task_definition(**fargate_taskdef(family))["taskDefinition"]["revision"])
            except ClientError as e:
                results.append(e.response)
        return results

    with ThreadPoolExecutor(len(clients)) as pool:
        results = [r for rs in pool.map(work, clients) for r in rs]
    errors = [r for r in results if isinstance(r, dict)]
    server_errors = [
        (e["ResponseMetadata"]["HTTPStatusCode"], e["Error"]["Code"], e["Error"].get("Message"))
        for e in errors
        if e["ResponseMetadata"]["HTTPStatusCode"] >= 500
    ]
    assert server_errors == [], f"{len(server_errors)} of {len(results)} registrations got a 5xx: {server_errors[:3]}"
    for e in errors:
        assert (e["ResponseMetadata"]["HTTPStatusCode"], e["Error"]["Code"]) == (400, "ClientException"), e
    revisions = sorted(r for r in results if isinstance(r, int))
    assert revisions == list(range(1, len(revisions) + 1))
    assert len(revisions) >= len(clients), f"only {len(revisions)} of {len(results)} registrations succeeded"
    arns = clients[0].list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert arns == [berth.taskdef_arn(family, n) for n in revisions]


def test_concurrent_create_cluster_is_idempotent(berth):
    from concurrent.futures import ThreadPoolExecutor

    name = unique("race-cluster")
    clients = [berth.boto3_client() for _ in range(8)]
    with ThreadPoolExecutor(len(clients)) as pool:
        arns = list(pool.map(lambda c: c.create_cluster(clusterName=name)["cluster"]["clusterArn"], clients))
    assert set(arns) == {berth.cluster_arn(name)}
    assert clients[0].list_clusters()["clusterArns"].count(berth.cluster_arn(name)) == 1
