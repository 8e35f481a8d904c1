"""The deployment docs only name what exists and is validated: every file they apply, deploy,
build or submit is one the other tests check, the Secret they create has the keys the pods read,
the API-key table they write is accepted by serving, the hydralm commands parse with the real
CLI, and the request they send is a valid personalized request for a user the job creates."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml
from deploy_check import SHARED_KUBERAY_SCHEMAS, load_manifests
from deploy_setup import SERVE_CLUSTER, by_kind
from project_facts import REPO
from retrain_rules import RETRAIN_STAGES, parse_cli

from hydralm.jobconfig import load_job_config
from serving.auth import load_key_table
from serving.config import AuthConfig, ServeArgs
from serving.openai_protocol import ChatCompletionRequest

README_SECTIONS = REPO / "README.md"
OPERATIONS = REPO / "docs" / "operations.md"
RETRAIN_CLUSTER = REPO / "deploy" / "retrain-cluster.yaml"
FAKE_DIGEST = "ab" * 32


def _commands() -> list[str]:
    """The shell commands of the page's bash blocks (continuations joined, comments, heredoc
    bodies and a trailing `&` dropped)."""
    text = README_SECTIONS.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"<<EOF\n.*?\nEOF\n", "<<EOF\n", block, flags=re.S)
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                found.append(line.removesuffix("&").strip())
    return found


def _heredoc_env() -> dict[str, str]:
    """KEY=value lines of the launcher's credentials file, $DIGEST filled in."""
    text = README_SECTIONS.read_text(encoding="utf-8")
    body = re.search(r"cluster-secrets/env <<EOF\n(.*?)\nEOF\n", text, flags=re.S).group(1)
    pairs = (shlex.split(line.replace("$DIGEST", FAKE_DIGEST))[0].split("=", 1)
             for line in body.splitlines())
    return dict(pairs)


COMMANDS = _commands()


def _with(prefix: str) -> list[list[str]]:
    return [shlex.split(c) for c in COMMANDS if c.startswith(prefix)]


@pytest.mark.parametrize("page", [README_SECTIONS, OPERATIONS])
def test_every_repository_path_named_exists(page):
    text = page.read_text(encoding="utf-8")
    variants = [re.sub(r"\{([\w,.]+)\}",  # Dockerfile.{cpu,gpu} -> each alternative
                       lambda m, i=i: m.group(1).split(",")[min(i, m.group(1).count(","))], text)
                for i in range(2)]
    paths = set(re.findall(r"(?<![\w./$-])((?:deploy|configs|docs)/[\w./-]*\w|ray_cluster\.yaml)",
                           " ".join(variants)))
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert paths and missing == []


def test_applied_manifests_are_the_validated_ones():
    validated = {m.file for m in load_manifests()}
    applied = set()
    for command in COMMANDS:
        if "kubectl apply" in command or "kubectl delete -f" in command:
            tokens = shlex.split(command)
            applied |= {t for t in tokens if t.startswith("deploy/kuberay/")}
    assert applied and applied <= validated
    assert {"deploy/kuberay/rayservice.yaml", "deploy/kuberay/rayjob-retrain.yaml",
            "deploy/kuberay/services.yaml", "deploy/kuberay/monitoring.yaml"} <= applied


def test_built_images_are_the_ones_the_manifests_run():
    built = {t[t.index("-t") + 1] for t in _with("docker build")}
    pushed = {t[2] for t in _with("docker push")}
    dockerfiles = {t[t.index("-f") + 1] for t in _with("docker build")}
    assert all((REPO / f).is_file() for f in dockerfiles)
    run = set()
    for m in load_manifests():
        run |= set(re.findall(r"registry\.example\.com/[\w.:-]+", yaml.safe_dump(m.doc)))
    assert built == pushed == {i.replace("registry.example.com", "$REGISTRY") for i in run}


def test_secret_created_has_the_keys_the_pods_read(facts):
    (create,) = _with("kubectl create secret generic")
    assert create[4] == "hydralm-credentials"
    literal = {t.removeprefix("--from-literal=").split("=", 1)[0]
               for t in create if t.startswith("--from-literal=")}
    assert literal == set(facts.secret_keys["hydralm-credentials"])
    assert set(_heredoc_env()) == literal


def test_credentials_file_is_the_one_the_launcher_syncs():
    launcher = yaml.safe_load((REPO / "ray_cluster.yaml").read_text(encoding="utf-8"))
    (local,) = [v for v in launcher["file_mounts"].values() if v.startswith("~/")]
    assert f"cat > {local}/env <<EOF" in README_SECTIONS.read_text(encoding="utf-8")


def test_api_key_tables_written_are_accepted_by_serving(monkeypatch):
    (create,) = _with("kubectl create secret generic")
    kube = next(t for t in create if t.startswith("--from-literal=HYDRALM_API_KEYS="))
    for table in (kube.removeprefix("--from-literal=HYDRALM_API_KEYS="),
                  _heredoc_env()["HYDRALM_API_KEYS"]):
        monkeypatch.setenv("HYDRALM_API_KEYS", table.replace("$DIGEST", FAKE_DIGEST))
        grants = load_key_table(AuthConfig(required=True))
        assert list(grants) == [FAKE_DIGEST] and grants[FAKE_DIGEST].allows("u0001")


def test_submitted_jobs_run_every_stage_of_the_cluster_job_config():
    stages = []
    for tokens in _with("ray job submit"):
        cli = tokens[tokens.index("--") + 1:]
        args, complaint = parse_cli(cli[1:])
        assert cli[0] == "hydralm" and args is not None, complaint
        assert REPO / str(args.config) == RETRAIN_CLUSTER
        assert args.ray_address == "auto"  # join the cluster, not a Ray of its own
        stages.append(args.command)
    assert stages == RETRAIN_STAGES


def test_serve_deploy_sends_the_cluster_serve_config():
    (deploy,) = _with("serve deploy")
    assert REPO / deploy[2] == SERVE_CLUSTER


def test_launcher_commands_use_ray_cluster_yaml(serve_cluster_config):
    used = [t for t in COMMANDS if t.startswith(("ray up", "ray dashboard", "ray attach",
                                                  "ray down"))]
    assert len(used) == 4 and all("ray_cluster.yaml" in c.split() for c in used)
    attach = shlex.split(next(c for c in used if c.startswith("ray attach")))
    assert attach[attach.index("-p") + 1] == str(serve_cluster_config["http_options"]["port"])


def test_bucket_placeholder_is_replaced_in_every_file_that_has_it():
    holders = {str(p.relative_to(REPO)) for p in [*REPO.glob("deploy/**/*.yaml"),
                                                   REPO / "ray_cluster.yaml"]
               if "s3://hydralm-example" in p.read_text(encoding="utf-8")}
    for tokens in _with("sed -i"):
        assert set(tokens[3:]) == holders


def test_names_waited_for_and_forwarded_match_the_manifests(manifests):
    service = by_kind(manifests, "RayService")["metadata"]["name"]
    job = by_kind(manifests, "RayJob")["metadata"]["name"]
    waits = {t[2] for t in _with("kubectl wait")}
    assert waits == {f"rayservice/{service}", f"rayjob/{job}"}
    forwards = {t[2] for t in _with("kubectl port-forward")}
    assert forwards == {f"svc/{service}-serve-svc"}
    interactive = by_kind(manifests, "RayCluster")["metadata"]["name"]
    assert f"svc/{interactive}-head-svc" in README_SECTIONS.read_text(encoding="utf-8")


def test_curl_sends_a_valid_request_for_a_user_the_job_creates(serve_cluster_config):
    job = load_job_config(RETRAIN_CLUSTER)
    args = ServeArgs.model_validate(serve_cluster_config["applications"][1]["args"])
    port = serve_cluster_config["http_options"]["port"]
    curls = _with("curl")
    assert len(curls) == 2
    for tokens in curls:
        assert tokens[2] == f"127.0.0.1:{port}/v1/chat/completions"
        body = ChatCompletionRequest.model_validate(json.loads(tokens[tokens.index("-d") + 1]))
        assert body.model == args.model_name
        assert re.fullmatch(r"u\d{4}", body.user) and int(body.user[1:]) < job.data.synth.users


def test_helm_installs_the_operator_release_of_the_crds():
    readme = SHARED_KUBERAY_SCHEMAS / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} is absent: the CRDs' release line is unknown here")
    line = re.search(r"release\s+line\s+(\d+\.\d+)", readme.read_text(encoding="utf-8")).group(1)
    (install,) = [t for t in _with("helm install") if "kuberay/kuberay-operator" in t]
    assert install[install.index("--version") + 1].startswith(f"{line}.")
