#!/usr/bin/env bash
# Offline checks of the nlds chart, without a helm binary or a cluster:
#   - yamllint on Chart.yaml, values.yaml, files/ and ci/;
#   - values.schema.json is a valid JSON schema, and names exactly the roles of values.yaml;
#   - for the defaults and every ci/*-values.yaml: helm lint --strict (which validates the values
#     against values.schema.json) and helm template, through Helm's Go library (PyPI
#     helm-python-sdk); the TOML of the ConfigMap and Secret parsed, and every key of the
#     settings files checked against nlds.example.toml (the keys the programs accept; sections
#     the programs do not have yet, set through `settings`, are named, not checked), and compared
#     with ci/rendered/<case>/*.toml, which nlds-settings' test `chart` loads with the real loader;
#     kubernetes-validate --strict on every built-in kind; the CRD kinds (ServiceMonitor,
#     PrometheusRule, ScaledObject, TriggerAuthentication), which it does not know, against the
#     small schemas of ci/crd-schemas.yaml (any other kind goes to kubernetes-validate, and check.sh fails when it knows no schema for it); yamllint on the output;
#   - every key of values.yaml has a `# --` comment, and README.md's values table is current
#     (ci/values-table.py);
#   - every ci/bad-values/*.yaml must FAIL (lint or render), with the message it names in its
#     first line (`# expect: TEXT`);
#   - files/alerts.yaml: `promtool check rules` and `promtool test rules ci/alerts-test.yaml`;
#     files/dashboard.json: every query parses (`promtool check rules` over them as recording
#     rules) (Debian package prometheus, which scripts/services.sh installs).
# Tools go to a throwaway venv (default /tmp/nlds-helmcheck-venv).
set -euo pipefail

CHART="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$CHART/../.." && pwd)"
VENV="${HELMCHECK_VENV:-/tmp/nlds-helmcheck-venv}"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"

if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/yamllint" ] ||
    ! "$VENV/bin/python" -c 'import helm_python, jsonschema, yaml' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "yamllint>=1.35" \
        pyyaml "jsonschema>=4.17"
fi

echo "== yamllint Chart.yaml values.yaml files/ ci/"
"$VENV/bin/yamllint" -c "$CHART/.yamllint" "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART"/files/*.yaml \
    "$CHART"/ci/*.yaml "$CHART"/ci/bad-values/*.yaml

echo "== values.yaml documented, README.md's values table current"
"$VENV/bin/python" "$CHART/ci/values-table.py"

echo "== values.schema.json"
"$VENV/bin/python" - "$CHART" <<'PY'
import json, sys, yaml, jsonschema
chart = sys.argv[1]
schema = json.load(open(f"{chart}/values.schema.json"))
jsonschema.Draft7Validator.check_schema(schema)
values = yaml.safe_load(open(f"{chart}/values.yaml"))
errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
for e in errors:
    print(f"  values.yaml {'.'.join(map(str, e.path))}: {e.message}")
roles = list(values["workers"])
props = schema["properties"]
checks = {
    "workers": list(props["workers"]["properties"]),
    "hotTier.roles": props["hotTier"]["properties"]["roles"]["items"]["enum"],
    "cold.roles": props["cold"]["properties"]["roles"]["items"]["enum"],
    "keda.roles": props["keda"]["properties"]["roles"]["propertyNames"]["enum"] + ["monitor"],
}
bad = [k for k, v in checks.items() if sorted(v) != sorted(roles)]
for k in bad:
    print(f"  schema {k} names {sorted(checks[k])}, values.yaml workers: {sorted(roles)}")
if errors or bad:
    sys.exit("values.schema.json does not match values.yaml")
print(f"  valid draft-07 schema; values.yaml conforms; {len(roles)} roles named alike")
PY

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "== files/alerts.yaml: promtool check rules, promtool test rules (ci/alerts-test.yaml)"
if ! command -v promtool >/dev/null 2>&1; then
    # Debian package `prometheus`, which scripts/services.sh installs.
    if [ -n "${CI:-}" ] || [ "${NLDS_TEST_ALLOW_SKIP:-}" != 1 ]; then
        echo "promtool is missing: run scripts/services.sh (or apt-get install prometheus)"
        exit 1
    fi
    echo "  SKIPPED: promtool is missing (NLDS_TEST_ALLOW_SKIP=1)"
else
    mkdir -p "$OUT/rules"
    # The chart puts the file's rules in one group of its PrometheusRule: the same here.
    "$VENV/bin/python" - "$CHART/files/alerts.yaml" "$OUT/rules/nlds-rules.yaml" <<'PY'
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))["rules"]
yaml.safe_dump({"groups": [{"name": "nlds", "rules": rules}]}, open(sys.argv[2], "w"), sort_keys=False)
PY
    cp "$CHART/ci/alerts-test.yaml" "$OUT/rules/"
    promtool check rules "$OUT/rules/nlds-rules.yaml"
    (cd "$OUT/rules" && promtool test rules alerts-test.yaml)
    echo "== files/dashboard.json: every query parses (promtool check rules, as recording rules)"
    "$VENV/bin/python" - "$CHART/files/dashboard.json" "$OUT/rules/dashboard-rules.yaml" <<'PY'
import json, sys, yaml
dash = json.load(open(sys.argv[1]))
# Grafana's variables, as Grafana would fill them in.
fill = {"$__rate_interval": "5m", "$__range": "6h", "$namespace": ".*"}
rules = []
for p in dash["panels"]:
    for t in p["targets"]:
        expr = t["expr"]
        for k, v in fill.items():
            expr = expr.replace(k, v)
        rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"), sort_keys=False)
PY
    promtool check rules "$OUT/rules/dashboard-rules.yaml"
fi

# render VALUES_FILE OUT_DIR: lint, render, TOML checks; writes OUT_DIR/builtin.yaml and crds.yaml.
render() {
    "$VENV/bin/python" - "$CHART" "$1" "$2" "$KUBE_VERSION" "$REPO/nlds.example.toml" <<'PY'
import re, sys, tomllib, yaml, jsonschema
import helm_python as helm

chart, values_file, out, kube, example = sys.argv[1:6]
values = yaml.safe_load(open(values_file)) if values_file else None
report = helm.lint(chart, values, strict=True, kube_version="v" + kube)
bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
for m in report.get("messages", []):
    print(f"  lint: {m}")
if bad or report.get("errors"):
    sys.exit(f"helm lint failed: {report.get('errors')} {bad}")
rendered = helm.Chart.load(chart).render(values, name="rel", namespace="nlds", is_install=True)
texts = [t for p, t in sorted(rendered.items()) if not p.endswith("NOTES.txt") and t.strip()]
open(f"{out}/rendered.yaml", "w").write("\n---\n".join(texts))  # as Helm wrote it, for yamllint
docs = [d for t in texts for d in yaml.safe_load_all(t) if d]

# The keys the programs accept: every key of nlds.example.toml (which a test of nlds-settings
# parses), commented-out ones included; maps keyed by the operator's names are wildcards.
known, section = set(), ""
def walk(prefix, table):
    for k, v in table.items():
        path = f"{prefix}{k}"
        known.add(path)
        if isinstance(v, dict):
            walk(path + ".", v)
ex = tomllib.load(open(example, "rb"))
walk("", ex)
for line in open(example):
    m = re.match(r"^\[+([^\]]+)\]+", line)
    if m:
        section = m.group(1).strip()
    m = re.match(r"^#\s*([a-z_]+)\s*=", line)
    if m:
        known.add(f"{section}.{m.group(1)}")
wild = ["workers.object_store.tenancies.", "policy.watermarks.", "workers.cold.xrootd.env."]
known |= {"policy.rule"}  # an array of tables: its rules are checked by nlds-policy
top = {k for k in ex}
unknown_sections = set()
def check(prefix, table, file):
    for k, v in table.items():
        path = f"{prefix}{k}"
        if "." not in path and path not in top:
            unknown_sections.add(path)
            continue
        if any(path.startswith(w) for w in wild) or path == "policy.rule":
            continue
        if path not in known:
            sys.exit(f"{file}: key {path} is not a settings key (nlds.example.toml)")
        if isinstance(v, dict):
            check(path + ".", v, file)

builtin, crds = [], []
for d in docs:
    data = d.get("data") or d.get("stringData") or {}
    for key, text in data.items():
        if key.endswith(".toml"):
            parsed = tomllib.loads(text)
            if d["kind"] == "ConfigMap":
                check("", parsed, key)
                open(f"{out}/{key}", "w").write(text)
    (crds if d["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "keda.sh") else builtin).append(d)
# kubernetes-validate only warns about a kind it has no schema for: check.sh fails on that.

# Kinds kubernetes-validate does not know: only these, each against its schema.
schemas = yaml.safe_load(open(f"{chart}/ci/crd-schemas.yaml"))
for d in crds:
    key = f"{d['apiVersion']}/{d['kind']}"
    if key not in schemas:
        sys.exit(f"{key} {d['metadata']['name']}: no schema in ci/crd-schemas.yaml")
    errs = list(jsonschema.Draft7Validator(schemas[key]).iter_errors(d))
    for e in errs:
        print(f"  {key} {d['metadata']['name']} {'.'.join(map(str, e.path))}: {e.message}")
    if errs:
        sys.exit(f"{key} does not match ci/crd-schemas.yaml")
yaml.safe_dump_all(builtin, open(f"{out}/builtin.yaml", "w"), sort_keys=False)
yaml.safe_dump_all(crds, open(f"{out}/crds.yaml", "w"), sort_keys=False)
kinds = sorted({d["kind"] for d in builtin})
print(f"  rendered {len(docs)} objects ({', '.join(kinds)}); TOML parses; settings keys known")
if crds:
    print(f"  CRD objects checked against ci/crd-schemas.yaml: {', '.join(sorted(d['kind'] for d in crds))}")
if unknown_sections:
    print(f"  sections not in nlds.example.toml (from `settings`, not checked): {', '.join(sorted(unknown_sections))}")
PY
}

for vf in "" "$CHART"/ci/*-values.yaml; do
    name="${vf:+$(basename "$vf" .yaml)}"
    name="${name:-defaults}"
    echo "== $name: lint, render"
    mkdir -p "$OUT/$name"
    render "$vf" "$OUT/$name"
    # kubernetes-validate only warns about a kind it has no schema for: such a kind fails here.
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$OUT/$name/builtin.yaml" \
        2>&1 | tee "$OUT/$name/validate.log"
    if grep -q "Couldn't find schema" "$OUT/$name/validate.log"; then
        echo "a kind above is neither built in nor in ci/crd-schemas.yaml"
        exit 1
    fi
    echo "  kubernetes-validate --strict: $(grep -c '^kind:' "$OUT/$name/builtin.yaml") objects valid"
    "$VENV/bin/yamllint" -d relaxed --no-warnings "$OUT/$name/rendered.yaml"
    # The settings files as rendered, kept in ci/rendered/: nlds-settings' test `chart` loads them
    # with the programs' own loader. UPDATE_RENDERED=1 rewrites them after a deliberate change.
    for f in server.toml workers.toml; do
        if [ "${UPDATE_RENDERED:-}" = 1 ]; then
            mkdir -p "$CHART/ci/rendered/$name"
            cp "$OUT/$name/$f" "$CHART/ci/rendered/$name/$f"
        elif ! diff -u "$CHART/ci/rendered/$name/$f" "$OUT/$name/$f"; then
            echo "ci/rendered/$name/$f is not what the chart renders: check the change, then run"
            echo "UPDATE_RENDERED=1 charts/nlds/ci/check.sh (and cargo test -p nlds-settings --test chart)"
            exit 1
        fi
    done
    echo "  ci/rendered/$name/{server,workers}.toml match"
done

for vf in "$CHART"/ci/bad-values/*.yaml; do
    name="$(basename "$vf" .yaml)"
    expect="$(sed -n '1s/^# expect: //p' "$vf")"
    [ -n "$expect" ] || { echo "$vf: first line must be '# expect: TEXT'"; exit 1; }
    echo "== bad-values/$name: must fail with \"$expect\""
    mkdir -p "$OUT/bad-$name"
    if render "$vf" "$OUT/bad-$name" >"$OUT/bad-$name/log" 2>&1; then
        cat "$OUT/bad-$name/log"
        echo "bad-values/$name was accepted"
        exit 1
    fi
    if ! grep -qF -- "$expect" "$OUT/bad-$name/log"; then
        cat "$OUT/bad-$name/log"
        echo "bad-values/$name failed, but not with \"$expect\""
        exit 1
    fi
    echo "  refused: $(grep -F -- "$expect" "$OUT/bad-$name/log" | head -n1 | cut -c1-200)"
done
echo "chart checks passed"
