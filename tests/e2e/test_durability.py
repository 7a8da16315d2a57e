"""State survives kill -9 and restarts; the data directory's files."""

from __future__ import annotations

import json
import stat

from conftest import fargate_taskdef, parse_env_output, run_berth, unique


def test_state_survives_kill_9(private_berth, aws_factory):
    b = private_berth
    aws = aws_factory(b)
    cluster = unique("durable")
    family = unique("durable-td")

    created = aws.ok("ecs", "create-cluster", "--cluster-name", cluster, "--tags", "key=keep,value=me")["cluster"]
    ecs = b.boto3_client()
    td1 = ecs.register_task_definition(**fargate_taskdef(family), tags=[{"key": "k", "value": "v"}])["taskDefinition"]
    td2 = ecs.register_task_definition(**fargate_taskdef(family, cpu="1 vCPU", memory="2 GB"))["taskDefinition"]
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")
    deleted = unique("deleted")
    ecs.create_cluster(clusterName=deleted)
    ecs.delete_cluster(cluster=deleted)
    old_env = dict(b.env)

    b.kill9()
    b.start()  # same data dir; the port may differ

    assert b.endpoint == b.env["AWS_ENDPOINT_URL"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        assert b.env[key] == old_env[key], key

    aws = aws_factory(b)
    out = aws.ok("ecs", "describe-clusters", "--clusters", cluster, "--include", "TAGS")
    [c] = out["clusters"]
    assert c["clusterArn"] == created["clusterArn"] == b.cluster_arn(cluster)
    assert c["status"] == "ACTIVE"
    assert c["tags"] == [{"key": "keep", "value": "me"}]
    assert created["clusterArn"] in aws.ok("ecs", "list-clusters")["clusterArns"]
    assert b.cluster_arn("default") in aws.ok("ecs", "list-clusters")["clusterArns"]

    ecs = b.boto3_client()
    gone = ecs.describe_clusters(clusters=[deleted])["clusters"]
    assert [x["status"] for x in gone] == ["INACTIVE"]

    d = aws.ok("ecs", "describe-task-definition", "--task-definition", family)["taskDefinition"]
    assert d["taskDefinitionArn"] == td2["taskDefinitionArn"] == b.taskdef_arn(family, 2)
    assert (d["cpu"], d["memory"]) == ("1024", "2048")
    one = ecs.describe_task_definition(taskDefinition=td1["taskDefinitionArn"], include=["TAGS"])
    assert one["taskDefinition"]["status"] == "INACTIVE"
    assert one["tags"] == [{"key": "k", "value": "v"}]

    # Revisions continue where they were.
    td3 = ecs.register_task_definition(**fargate_taskdef(family))["taskDefinition"]
    assert td3["revision"] == 3
    assert td3["taskDefinitionArn"] == b.taskdef_arn(family, 3)

    # And once more after a graceful stop.
    assert b.stop() == 0, b.log_text()
    b.start()
    ecs = b.boto3_client()
    assert ecs.register_task_definition(**fargate_taskdef(family))["taskDefinition"]["revision"] == 4
    assert ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"] == [
        b.taskdef_arn(family, 1)
    ]


def test_data_dir_files(private_berth):
    b = private_berth
    creds_path = b.data_dir / "credentials.json"
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(b.data_dir.stat().st_mode) & 0o077 == 0, oct(b.data_dir.stat().st_mode)

    creds = json.loads(creds_path.read_text())
    assert set(creds) >= {"accessKeyId", "secretAccessKey", "principalArn"}
    assert creds["principalArn"].startswith(f"arn:aws:iam::{b.account}:")

    config = json.loads((b.data_dir / "config.json").read_text())
    assert config == {"account": b.account, "region": "us-east-1"}
    assert len(config["account"]) == 12 and config["account"].isdigit()

    assert (b.data_dir / "endpoint").read_text().strip() == b.endpoint

    out = run_berth("env", "--data-dir", str(b.data_dir))
    assert out.returncode == 0, out.stderr
    env = parse_env_output(out.stdout)
    assert list(env) == [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "BERTH_REGISTRY",
    ]
    assert env == {
        "AWS_ENDPOINT_URL": b.endpoint,
        "AWS_ACCESS_KEY_ID": creds["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["secretAccessKey"],
        "AWS_REGION": config["region"],
        "AWS_DEFAULT_REGION": config["region"],
        "BERTH_REGISTRY": b.endpoint.removeprefix("http://"),
    }
    for line in out.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        assert value.startswith("'") and value.endswith("'"), line

    # The key survives a restart unchanged, and the account too.
    b.kill9()
    b.start()
    assert json.loads(creds_path.read_text()) == creds
    assert stat.S_IMODE(creds_path.stat().st_mode) == 0o600
    assert json.loads((b.data_dir / "config.json").read_text()) == config
    assert b.env["AWS_ACCESS_KEY_ID"] == creds["accessKeyId"]


def test_two_servers_cannot_share_a_data_dir(private_berth):
    """A second `berth up` on a data dir in use fails instead of corrupting it."""
    import subprocess

    out = subprocess.run(
        [private_berth.bin, "up", "--data-dir", str(private_berth.data_dir), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0, out
    assert out.stderr.strip(), out
    # The first one still serves.
    assert private_berth.boto3_client().list_clusters()["clusterArns"]


def test_berth_version():
    out = run_berth("version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("berth ")
    version = out.stdout.strip().split()[1]
    assert version[0].isdigit() and version.count(".") >= 2, out.stdout


def test_berth_env_on_missing_data_dir():
    out = run_berth("env", "--data-dir", "/nonexistent/berth-data")
    assert out.returncode != 0
    assert out.stdout == ""
    assert "/nonexistent/berth-data" in out.stderr
    assert "berth up" in out.stderr, out.stderr
