"""The role and the playbook without a target: ansible-lint's production profile, the syntax check,
the rolling-update keywords, the argument spec, and the GPIO backend choice run on this machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not in {BIN}: run tools/setup-venv.sh test,dev (pyproject's dev extra)")
    return str(path)


def env() -> dict[str, str]:
    import deploy_rootfs

    return deploy_rootfs.ansible_env()


def lint(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
        cwd=directory,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ansible_lint_production_profile_passes():
    proc = lint(ANSIBLE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Profile 'production' was required, and it passed" in out, out


def test_ansible_lint_would_catch_a_careless_task(tmp_path):
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy, symlinks=False)
    tasks = copy / "roles" / "pi_appliance" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n- shell: systemctl restart pi-appliance\n")
    proc = lint(copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "command-instead-of-module" in out or "no-changed-when" in out, out


def test_syntax_check():
    proc = subprocess.run(
        [tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.yml", "site.yml"],
        cwd=ANSIBLE,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_site_rolls_out_a_canary_first_and_stops_at_the_first_failure():
    (play,) = yaml.safe_load((ANSIBLE / "site.yml").read_text())
    assert play["serial"][0] == 1  # one Pi first
    assert play["max_fail_percentage"] == 0
    assert [r["role"] for r in play["roles"]] == ["pi_appliance"]
    inventory = yaml.safe_load((ANSIBLE / "inventory.example.yml").read_text())
    assert inventory["pi_appliances"]["hosts"]


def test_the_rollout_stops_at_a_failing_batch(tmp_path):
    """site.yml's own serial and max_fail_percentage on five local hosts, the third one failing: the
    canary, then a batch with the failure, then nothing more."""
    (site,) = yaml.safe_load((ANSIBLE / "site.yml").read_text())
    play = {
        "name": "Rollout",
        "hosts": "all",
        "gather_facts": False,
        "serial": site["serial"],
        "max_fail_percentage": site["max_fail_percentage"],
        "tasks": [
            {
                "name": "Fail on pi3",
                "ansible.builtin.fail": {"msg": "bad build"},
                "when": "inventory_hostname == 'pi3'",
            },
            {"name": "Deployed", "ansible.builtin.debug": {"msg": "ok"}},
        ],
    }
    (tmp_path / "rollout.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    inventory = "pi1,pi2,pi3,pi4,pi5,pi6,pi7,pi8,"
    proc = subprocess.run(
        [tool("ansible-playbook"), "-c", "local", "-i", inventory, str(tmp_path / "rollout.yml")],
        env=dict(env(), ANSIBLE_PYTHON_INTERPRETER=sys.executable),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    recap = proc.stdout.split("PLAY RECAP")[-1]
    touched = {line.split()[0] for line in recap.splitlines() if ":" in line and "ok=" in line}
    # serial [1, "25%"] of 8: pi1, then pi2+pi3; pi3 fails, so pi4..pi8 are never touched.
    assert touched == {"pi1", "pi2", "pi3"}, proc.stdout


def test_every_default_has_an_argument_spec():
    role = ANSIBLE / "roles" / "pi_appliance"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(spec)


def run_backend(tmp_path: Path, tasks_from: str = "backend", **extra_vars: str) -> subprocess.CompletedProcess[str]:
    """The role's backend choice (or its argument validation) on this machine, which is no Pi."""
    play = tmp_path / "backend.yml"
    play.write_text(
        "- name: Backend choice\n"
        "  hosts: localhost\n"
        "  gather_facts: true\n"
        "  gather_subset: [min]\n"
        "  tasks:\n"
        "    - name: Choose\n"
        "      ansible.builtin.include_role:\n"
        "        name: pi_appliance\n"
        f"        tasks_from: {tasks_from}\n"
    )
    args = [a for k, v in extra_vars.items() for a in ("-e", f"{k}={v}")]
    if tasks_from == "main":
        args.append("--check")  # only the validation should run; check mode in case it did not stop
    return subprocess.run(
        [tool("ansible-playbook"), "-c", "local", "-i", "localhost,", str(play), *args],
        cwd=ANSIBLE,
        env=dict(env(), ANSIBLE_PYTHON_INTERPRETER=sys.executable),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_auto_backend_is_the_simulator_off_a_pi(tmp_path):
    proc = run_backend(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not a Raspberry Pi" in proc.stdout and "output sim (auto)" in proc.stdout, proc.stdout


def test_pigpio_is_refused_where_it_cannot_run(tmp_path):
    proc = run_backend(tmp_path, pi_appliance_output="pigpio")
    assert proc.returncode != 0
    assert "needs Raspberry Pi OS Bookworm on a Pi 4 or older" in proc.stdout, proc.stdout


def test_argument_spec_rejects_a_bad_choice(tmp_path):
    proc = run_backend(tmp_path, tasks_from="main", pi_appliance_output="banana")
    assert proc.returncode != 0
    assert "Validating arguments against arg spec" in proc.stdout, proc.stdout
    assert "changed=0" in proc.stdout and "ok=2" in proc.stdout, "nothing may run after a failed validation"
    assert "pi_appliance_output" in proc.stdout and "banana" in proc.stdout, proc.stdout
