#!/usr/bin/env bash
# make demo: gallium-net's main job end to end, shown step by step with the
# elapsed time. Each step says what it does, runs the real CLI, and shows
# what came out. Later parts of the project add steps here.
set -euo pipefail
cd "$(dirname "$0")/.."
GN=${GN:-bin/gallium-net}
out=${DEMO_OUT:-/tmp/gallium-demo}
rm -rf "$out" && mkdir -p "$out"
t0=$(date +%s%N)

step() {
  local ds=$((($(date +%s%N) - t0) / 100000000))
  printf '\n\033[1m[%4d.%ds] %s\033[0m\n' $((ds / 10)) $((ds % 10)) "$*"
}
run() { printf '$ %s\n' "$*" >&2; "$@"; }

step "1. Validate the production example: 3 hypervisors, 2x10G infrastructure + 2x1G VM adapters each"
run "$GN" validate -f examples/cluster.yaml

step "2. Validate the evaluation example (single adapter): valid, with a warning"
run "$GN" validate -f examples/evaluation.yaml

step "3. A broken spec: every finding names the object and says what to change (JSON for scripts)"
cat >"$out/broken.yaml" <<'YAML'
cluster: {name: lab, subnet: 192.168.1.0/24, vip: 192.168.1.101}
hypervisors:
  - name: hv1
    managementIP: 192.168.1.101/24
    adapters: [{name: eno1, speedMbps: 1000}, {name: eno2, speedMbps: 10000}]
adapterGroups:
  - {name: infra, infrastructure: true, adapters: {hv1: [eno1, eno2]}}
networks:
  - {name: prod, adapterGroup: infra, vlan: 5000}
YAML
printf '$ %s\n' "$GN validate -f $out/broken.yaml -o json"
if "$GN" validate -f "$out/broken.yaml" -o json; then echo "expected the broken spec to be refused" >&2; exit 1; fi
echo "(exit status non-zero: the spec is refused)"

step "4. The spec's layers as tables"
run "$GN" list groups -f examples/cluster.yaml
run "$GN" list networks -f examples/cluster.yaml

step "5. libvirt network XML for network 'prod' on hv1 (bridge mode onto the group's VLAN-filtering bridge)"
run "$GN" xml network prod --hypervisor hv1 -f examples/cluster.yaml

step "6. A VM NIC's <interface> XML: model from the 'legacy' hardware profile, MAC from the cluster prefix"
run "$GN" xml interface --network prod --profile legacy -f examples/cluster.yaml

step "7. The four layers of hv1 as a diagram (DOT; rendered to SVG/PNG with Graphviz)"
run "$GN" diagram -f examples/cluster.yaml --hypervisor hv1 | tee "$out/hv1.dot"
if command -v dot >/dev/null; then
  dot -Tsvg "$out/hv1.dot" -o "$out/hv1.svg" && dot -Tpng "$out/hv1.dot" -o "$out/hv1.png"
  echo "rendered: $out/hv1.svg $out/hv1.png"
fi
run "$GN" diagram -f examples/cluster.yaml --hypervisor hv2 --format mermaid >"$out/hv2.mmd" && echo "mermaid: $out/hv2.mmd"

step "8. Cluster state: store the validated spec (embedded bbolt file; etcd in a real cluster), then a change based on a stale revision is refused"
: >"$out/config.yaml"
ST=(--state-file "$out/state.db" --config "$out/config.yaml")
HV=(--hypervisor hv1 --snapshot "$out/host-snapshot.json")
run "$GN" spec push -f examples/cluster.yaml "${ST[@]}" "${HV[@]}"
sed 's/vlan: 100/vlan: 110/' examples/cluster.yaml >"$out/cluster-v2.yaml"
run "$GN" spec push -f "$out/cluster-v2.yaml" --base 1 "${ST[@]}" "${HV[@]}"
sed 's/vlan: 200/vlan: 210/' examples/cluster.yaml >"$out/cluster-stale.yaml"
printf '$ %s\n' "$GN spec push -f $out/cluster-stale.yaml --base 1 ..." >&2
if "$GN" spec push -f "$out/cluster-stale.yaml" --base 1 "${ST[@]}" "${HV[@]}"; then echo "expected the stale push to be refused" >&2; exit 1; fi
run "$GN" spec diff -f "$out/cluster-stale.yaml" "${ST[@]}" || true
run "$GN" spec history "${ST[@]}"

step "9. Cluster-unique MACs from the ledger: the same NIC always gets the same MAC"
run "$GN" mac allocate --domain-uuid 6f1c2b9e-0000-4000-8000-000000000001 --domain web1 --key net0 --network prod --model virtio "${ST[@]}" "${HV[@]}"
run "$GN" mac allocate --domain-uuid 6f1c2b9e-0000-4000-8000-000000000001 --domain web1 --key net1 --network flat --model virtio "${ST[@]}" "${HV[@]}"
run "$GN" mac allocate --domain-uuid 6f1c2b9e-0000-4000-8000-000000000002 --domain db1 --key net0 --network dev --model e1000 "${ST[@]}" "${HV[@]}"
run "$GN" mac allocate --domain-uuid 6f1c2b9e-0000-4000-8000-000000000001 --domain web1 --key net0 --network prod "${ST[@]}" "${HV[@]}"
run "$GN" state nics "${ST[@]}"

step "10. The host snapshot the hook reads (VMs start even when the store is unreachable)"
run cat "$out/host-snapshot.json"

step "11. keepalived config of hv2 for the floating VIP (unicast VRRP on the infrastructure bridge)"
run "$GN" vip config -f examples/cluster.yaml --hypervisor hv2

step "done: outputs in $out"
