"""Acceptance: a repository with planted credentials in files and in deleted history is
scanned with full recall, its decoys raise nothing, and no secret leaks into any output."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from warden.scan import scan_paths

from .conftest import commit_all, git, init_repository


def _plant(repository: Path, fake) -> dict[str, tuple[str, str]]:
    """Write credentials across formats; return {secret: (rule id, path)}."""
    planted: dict[str, tuple[str, str]] = {}

    def put(path: str, text: str, secret: str, rule_id: str) -> None:
        target = repository / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a") as handle:
            handle.write(text + "\n")
        planted[secret] = (rule_id, path)

    key_id, aws_secret = fake.aws_key_id(), fake.aws_secret()
    # The access key id is an identifier, shown on purpose; the secret access key is not.
    put(
        "deploy/aws.env",
        f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={aws_secret}",
        aws_secret,
        "aws-access-key",
    )
    token = fake.github()
    put("config/app.yaml", f"github:\n  token: {token}", token, "github-pat")
    slack = fake.slack_bot()
    put("config/app.yaml", f'slack_bot_token: "{slack}"', slack, "slack-bot-token")
    stripe = fake.stripe_live()
    put("app/payments.py", f'STRIPE_KEY = "{stripe}"', stripe, "stripe-secret-key")
    sendgrid = fake.sendgrid()
    put("app/mail.js", f"const key = '{sendgrid}';", sendgrid, "sendgrid-api-key")
    gitlab = fake.gitlab()
    put(".gitlab-ci.yml", f"variables:\n  GL_TOKEN: {gitlab}", gitlab, "gitlab-pat")
    npm = fake.npm()
    put(".npmrc", f"//registry.npmjs.org/:_authToken={npm}", npm, "npm-access-token")
    anthropic = fake.anthropic()
    put("ai/.env", f"ANTHROPIC_API_KEY={anthropic}", anthropic, "anthropic-api-key")
    google = fake.google_api_key()
    put(
        "web/maps.html",
        f'<script src="https://maps.example/js?key={google}"></script>',
        google,
        "google-api-key",
    )
    db_password = fake.password().rstrip("#")  # URLs percent-encode "#"
    put(
        "deploy/values.env",
        f"DATABASE_URL=postgresql://billing:{db_password}@db.internal:5432/billing",
        db_password,
        "database-connection-uri",
    )
    app_password = fake.password()
    put(
        "appsettings.json",
        json.dumps({"Smtp": {"Host": "mail", "Password": app_password}}, indent=2),
        app_password,
        "generic-password",
    )
    tf_secret = fake.chars("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 40)
    put(
        "infra/main.tf",
        f'variable "cloudflare_api_token" {{\n  default = "{tf_secret}"\n}}',
        tf_secret,
        "cloudflare-api-token",
    )
    conn_password = fake.password()
    put(
        "web.config",
        f'<add name="Main" connectionString="Server=sql01;Database=shop;User Id=shop;Password={conn_password};" />',
        conn_password,
        "connection-string-password",
    )
    k8s_password = fake.password()
    encoded = base64.b64encode(k8s_password.encode()).decode()
    secret_manifest = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {k8s_password}\ndata:\n  other: {encoded}"
    put("k8s/secret.yaml", secret_manifest, k8s_password, "generic-password")
    data_password = fake.password()
    encoded_password = base64.b64encode(data_password.encode()).decode()
    put(
        "k8s/db-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n"
        f"data:\n  username: YmlsbGluZw==\n  password: {encoded_password}",
        data_password,
        "generic-password",
    )
    registry_auth = base64.b64encode(f"deploy:{fake.password()}".encode()).decode()
    put(
        "docker/config.json",
        json.dumps({"auths": {"registry.example.org": {"auth": registry_auth}}}, indent=2),
        registry_auth,
        "docker-registry-auth",
    )
    workflow_password = fake.password()
    put(
        ".github/workflows/ci.yml",
        f"jobs:\n  build:\n    steps:\n      - uses: docker/login-action@v3\n        with:\n          username: ci\n          password: {workflow_password}",
        workflow_password,
        "generic-password",
    )
    sa_token = fake.jwt(
        '{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"prod","kubernetes.io/serviceaccount/service-account.name":"deployer"}'
    )
    put(
        "k8s/kubeconfig",
        f"users:\n- name: deployer\n  user:\n    token: {sa_token}",
        sa_token,
        "kubernetes-service-account-token",
    )
    return planted


def _decoys(repository: Path, fake) -> None:
    """Write values that look like secrets but are not; none may be reported."""
    (repository / "docs").mkdir(exist_ok=True)
    (repository / "docs" / "setup.md").write_text(
        "Set `AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE` and `GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`.\n"
        "export API_KEY=<your-api-key>\npassword: changeme\n"
    )
    (repository / "chart").mkdir(exist_ok=True)
    (repository / "chart" / "values.yaml").write_text(
        "db:\n  password: {{ .Values.db.password }}\n  token: ${DB_TOKEN}\n"
        "request_id: 4ea38b7b-f563-7709-4bae-87aeaaaa8a2c\n"
        "commit: 3f786850e387550fdab836ed7e6dc881de23001b\n"
        "checksum: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\n"
    )
    (repository / "package-lock.json").write_text(
        json.dumps(
            {
                "packages": {
                    "node_modules/left-pad": {
                        "integrity": "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQ7cI4ZZJqhx4UV2Sl8xvm5nm9M2p1+0qSRAzKHB5hz2mXAkQ==",
                        "resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
                    }
                }
            },
            indent=2,
        )
    )
    placeholder = base64.b64encode(b"changeme").decode()
    (repository / "k8s").mkdir(exist_ok=True)
    (repository / "k8s" / "example-secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: example\n"
        f"data:\n  password: {placeholder}\n  api_key: {placeholder}\n"
    )
    (repository / "app" / "settings.py").parent.mkdir(exist_ok=True)
    (repository / "app" / "settings.py").write_text(
        'import os\nPASSWORD = os.environ["DB_PASSWORD"]\nSECRET_KEY = get_secret("django")\n'
        "password_min_length = 12\ntoken_url = 'https://auth.example.org/token'\n"
    )


def _build(
    tmp_path: Path, fake
) -> tuple[Path, dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    repository = init_repository(tmp_path / "repo")
    current = _plant(repository, fake)
    _decoys(repository, fake)
    commit_all(repository, "Add the application")
    # A credential committed, then deleted: only history holds it.
    old = repository / "scripts" / "old_deploy.sh"
    old.parent.mkdir()
    deleted_key, deleted_secret = fake.aws_key_id(), fake.aws_secret()
    old.write_text(
        f"export AWS_ACCESS_KEY_ID={deleted_key}\nexport AWS_SECRET_ACCESS_KEY={deleted_secret}\n"
    )
    deleted_token = fake.github("gho")
    (repository / "scripts" / "token.txt").write_text(f"oauth: {deleted_token}\n")
    first = commit_all(repository, "Add the deploy script")
    git(repository, "rm", "-q", "-r", "scripts")
    commit_all(repository, "Remove the deploy script")
    deleted = {
        deleted_key: ("aws-access-key", "scripts/old_deploy.sh"),
        deleted_token: ("github-oauth-token", "scripts/token.txt"),
    }
    return repository, current, {key: (*value, first) for key, value in deleted.items()}


def test_files_scan_finds_every_planted_credential(tmp_path, fake, workspace):
    repository, planted, _ = _build(tmp_path, fake)
    result = scan_paths([repository], workspace=workspace)
    found = {(finding.rule_id, finding.path) for finding in result.findings}
    for rule_id, path in planted.values():
        assert (rule_id, path) in found, (rule_id, path)


def test_decoys_raise_nothing(tmp_path, fake, workspace):
    repository, planted, _ = _build(tmp_path, fake)
    result = scan_paths([repository], workspace=workspace)
    decoy_paths = {
        "docs/setup.md",
        "chart/values.yaml",
        "package-lock.json",
        "app/settings.py",
        "k8s/example-secret.yaml",
    }
    assert [f for f in result.findings if f.path in decoy_paths] == []
    assert len(result.findings) == len(planted)


def test_history_scan_finds_deleted_credentials(tmp_path, fake, workspace):
    repository, planted, deleted = _build(tmp_path, fake)
    result = scan_paths([repository], git=True, workspace=workspace)
    by_place = {(finding.rule_id, finding.path): finding for finding in result.findings}
    for rule_id, path, commit in deleted.values():
        finding = by_place[(rule_id, path)]
        assert finding.commit == commit
    for rule_id, path in planted.values():
        assert (rule_id, path) in by_place
    assert result.stats.commits == 3


def test_history_scans_each_blob_once(tmp_path, fake, workspace):
    repository = init_repository(tmp_path / "repo")
    token = fake.github()
    (repository / "a.env").write_text(f"TOKEN={token}\n")
    first = commit_all(repository, "one")
    for number in range(3):
        (repository / "other.txt").write_text(f"change {number}\n")
        commit_all(repository, f"change {number}")
    git(repository, "checkout", "-q", "-b", "feature")
    (repository / "feature.txt").write_text("feature\n")
    commit_all(repository, "feature")
    result = scan_paths([repository], git=True, workspace=workspace)
    assert [(f.rule_id, f.commit) for f in result.findings] == [("github-pat", first)]
    assert result.stats.blobs_scanned == 5


def test_no_secret_reaches_any_output(tmp_path, fake, workspace):
    repository, planted, _ = _build(tmp_path, fake)
    outputs = []
    for format_name in ("json", "sarif", "table"):
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "warden",
                "scan",
                str(repository),
                "--git",
                "--format",
                format_name,
                "--workspace",
                str(workspace),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 1, completed.stderr
        outputs.append(completed.stdout + completed.stderr)
    baseline = tmp_path / "baseline.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "warden",
            "scan",
            str(repository),
            "--workspace",
            str(workspace),
            "--write-baseline",
            str(baseline),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    outputs.append(baseline.read_text())
    workspace_text = "".join(path.read_text(errors="replace") for path in workspace.iterdir())
    outputs.append(workspace_text)
    for secret in planted:
        for output in outputs:
            assert secret not in output
            assert secret[4:] not in output


def test_finding_reports_lifetime_identifier_and_replacement(tmp_path, fake, workspace):
    repository, _planted, _ = _build(tmp_path, fake)
    result = scan_paths([repository], workspace=workspace)
    aws = next(f for f in result.findings if f.rule_id == "aws-access-key")
    assert aws.long_lived is True
    assert aws.identifier
    assert aws.identifier.startswith("AKIA")
    assert aws.details["aws_account_id"].isdigit()
    assert aws.replacement.id == "warden-oidc-federation-aws"
    database = next(f for f in result.findings if f.rule_id == "database-connection-uri")
    assert database.identifier == "billing@db.internal:5432"
    assert database.replacement.id == "warden-database-lease"
    service_account = next(
        f for f in result.findings if f.rule_id == "kubernetes-service-account-token"
    )
    assert service_account.identifier == "system:serviceaccount:prod:deployer"
    assert service_account.replacement.id == "kubernetes-projected-token"


@pytest.mark.parametrize(("prefix", "long_lived"), [("AKIA", True), ("ASIA", False)])
def test_aws_key_prefix_sets_lifetime(tmp_path, fake, workspace, prefix, long_lived):
    (tmp_path / "creds").write_text(f"key = {fake.aws_key_id(prefix)}\n")
    result = scan_paths([tmp_path / "creds"], workspace=workspace)
    assert [f.long_lived for f in result.findings] == [long_lived]


@pytest.mark.timeout(60)
def test_special_files_are_skipped_with_a_warning(tmp_path, fake, workspace):
    """A FIFO, inside a folder or named directly, never blocks the scan."""
    folder = tmp_path / "code"
    folder.mkdir()
    secret = fake.aws_key_id()
    (folder / "settings.env").write_text(f"AWS_ACCESS_KEY_ID={secret}\n", encoding="utf-8")
    fifo = folder / "trap.env"
    os.mkfifo(fifo)

    result = scan_paths([folder], workspace=workspace)
    named = scan_paths([fifo], workspace=workspace)

    assert [finding.path for finding in result.findings] == ["settings.env"]
    assert any(warning.path.endswith("trap.env") for warning in result.warnings)
    assert named.findings == []
    assert any(warning.path.endswith("trap.env") for warning in named.warnings)
