#!/usr/bin/env bash
# Offline checks of the nlds chart, without a helm binary or a cluster:
#   helm lint --strict and helm template (Helm's Go library through PyPI
#   helm-python-sdk), kubernetes-validate --strict on every rendering, the
#   TOML in the ConfigMap and Secret parsed, and yamllint on Chart.yaml and
#   values.yaml. Renders the defaults and every ci/*-values.yaml.
# Tools go to a throwaway venv (default /tmp/nlds-helmcheck-venv).
set -euo pipefail

CHART="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HELMCHECK_VENV:-/tmp/nlds-helmcheck-venv}"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"

if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "yamllint>=1.35" pyyaml
fi

echo "== yamllint Chart.yaml values.yaml ci/*.yaml"
"$VENV/bin/yamllint" -c "$CHART/.yamllint" "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART"/ci/*.yaml

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

for vf in "" "$CHART"/ci/*-values.yaml; do
    name="${vf:+$(basename "$vf" .yaml)}"
    name="${name:-defaults}"
    echo "== $name: lint, render"
    "$VENV/bin/python" - "$CHART" "$vf" "$OUT/$name.yaml" "$KUBE_VERSION" <<'PY'
import sys, tomllib, yaml
import helm_python as helm

chart, values_file, out, kube = sys.argv[1:5]
values = yaml.safe_load(open(values_file)) if values_file else None
report = helm.lint(chart, values, strict=True, kube_version="v" + kube)
bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
for m in report.get("messages", []):
    print(f"  lint: {m}")
if bad or report.get("errors"):
    sys.exit(f"helm lint failed: {report.get('errors')} {bad}")
rendered = helm.Chart.load(chart).render(values, name="rel", namespace="nlds", is_install=True)
docs = [t for p, t in sorted(rendered.items()) if not p.endswith("NOTES.txt") and t.strip()]
open(out, "w").write("\n---\n".join(docs))
n = 0
for d in yaml.safe_load_all(open(out)):
    if not d:
        continue
    n += 1
    data = d.get("data") or d.get("stringData") or {}
    for key, text in data.items():
        if key.endswith(".toml"):
            tomllib.loads(text)
print(f"  rendered {n} objects; TOML parses")
PY
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$OUT/$name.yaml"
    "$VENV/bin/yamllint" -d relaxed --no-warnings "$OUT/$name.yaml"
done
echo "chart checks passed"
