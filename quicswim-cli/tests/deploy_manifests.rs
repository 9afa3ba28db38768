//! deploy/'s Kubernetes manifests and Compose file read as YAML and hold together: names,
//! labels, ports, probes and certificates agree across files, and every node is named as
//! its certificate. No cluster and no docker needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_quicswim");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn load(relative: &str) -> Vec<Yaml> {
    let path = deploy().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(Yaml::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Every Kubernetes manifest in the kustomization, as parsed documents.
fn kustomized() -> Vec<Yaml> {
    let kustomization = load("kubernetes/kustomization.yaml");
    let resources = strings(&kustomization[0]["resources"]);
    assert!(!resources.is_empty(), "kustomization lists no resources");
    resources
        .iter()
        .flat_map(|r| load(&format!("kubernetes/{r}")))
        .collect()
}

#[test]
fn kubernetes_manifests_are_well_formed() {
    let mut docs = kustomized();
    docs.extend(load("kubernetes/certificate.yaml"));
    for doc in &docs {
        for key in ["apiVersion", "kind"] {
            str_of(&doc[key], key);
        }
        str_of(&doc["metadata"]["name"], "metadata.name");
    }
}

#[test]
fn statefulset_joins_through_its_headless_service_and_probes_ready_and_health() {
    let docs = kustomized();
    let sts = find(&docs, "StatefulSet");
    let svc = find(&docs, "Service");
    let pdb = find(&docs, "PodDisruptionBudget");

    let service = str_of(&svc["metadata"]["name"], "Service name");
    assert_eq!(str_of(&sts["spec"]["serviceName"], "serviceName"), service);
    assert_eq!(str_of(&svc["spec"]["clusterIP"], "clusterIP"), "None");
    assert_eq!(
        svc["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let gossip = svc["spec"]["ports"]
        .as_vec()
        .expect("Service ports")
        .iter()
        .find(|p| p["name"].as_str() == Some("gossip"))
        .expect("a gossip port");
    assert_eq!(gossip["protocol"].as_str(), Some("UDP"));
    assert_eq!(gossip["port"].as_i64(), Some(7946));

    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for selector in [
        &sts["spec"]["selector"]["matchLabels"],
        &svc["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        let selector = selector.as_hash().expect("a label selector");
        for (k, v) in selector {
            assert_eq!(
                &labels[str_of(k, "label")],
                v,
                "selector {k:?} misses the pods"
            );
        }
    }

    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args.first().map(String::as_str), Some("agent"));
    let join = args
        .iter()
        .find_map(|a| a.strip_prefix("--join=dns+"))
        .expect("a dns+ seed");
    assert!(join.starts_with(&format!("{service}.")), "{join}");
    assert!(args.contains(&"--name=$(POD_NAME)".to_string()), "{args:?}");
    assert_eq!(
        str_of(&container["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/ready"
    );
    assert_eq!(
        str_of(&container["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/health"
    );
    let pre_stop = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert!(
        pre_stop.iter().any(|a| a == "leave") && pre_stop.iter().any(|a| a == "--api"),
        "{pre_stop:?}"
    );
    for resource in ["cpu", "memory"] {
        assert!(
            !container["resources"]["requests"][resource].is_badvalue(),
            "no {resource} request"
        );
    }
    assert!(pdb["spec"]["maxUnavailable"].as_i64().is_some());

    // One projected Secret per replica, each under the pod's own name.
    let replicas = sts["spec"]["replicas"].as_i64().expect("replicas");
    let statefulset = str_of(&sts["metadata"]["name"], "StatefulSet name");
    let tls = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .expect("a tls volume");
    let sources = tls["projected"]["sources"].as_vec().expect("projected");
    assert_eq!(sources.len() as i64, replicas);
    for (i, source) in sources.iter().enumerate() {
        let pod_name = format!("{statefulset}-{i}");
        assert_eq!(
            str_of(&source["secret"]["name"], "secret"),
            format!("{pod_name}-tls")
        );
        for item in source["secret"]["items"].as_vec().expect("items") {
            let path = str_of(&item["path"], "path");
            assert!(path.starts_with(&format!("{pod_name}/")), "{path}");
        }
    }
}

#[test]
fn cert_manager_example_issues_each_pods_secret_for_both_auths() {
    let docs = kustomized();
    let sts = find(&docs, "StatefulSet");
    let statefulset = str_of(&sts["metadata"]["name"], "StatefulSet name");
    let replicas = sts["spec"]["replicas"].as_i64().expect("replicas");
    let certs: Vec<Yaml> = load("kubernetes/certificate.yaml")
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some("Certificate"))
        .collect();
    assert_eq!(certs.len() as i64, replicas);
    for (i, cert) in certs.iter().enumerate() {
        let pod_name = format!("{statefulset}-{i}");
        let spec = &cert["spec"];
        assert_eq!(
            str_of(&spec["secretName"], "secretName"),
            format!("{pod_name}-tls")
        );
        assert_eq!(strings(&spec["dnsNames"]), vec![pod_name]);
        let usages = strings(&spec["usages"]);
        for usage in ["server auth", "client auth"] {
            assert!(usages.iter().any(|u| u == usage), "{usages:?}");
        }
    }
}

#[test]
fn compose_nodes_are_named_as_their_services_and_certificates() {
    let compose = &load("docker-compose.yml")[0];
    let services = compose["services"].as_hash().expect("services");
    let issued = strings(&compose["services"]["certs"]["command"]);
    let mut nodes = 0;
    for (name, service) in services {
        let name = str_of(name, "service name");
        let command = strings(&service["command"]);
        if command.first().map(String::as_str) != Some("agent") {
            continue;
        }
        nodes += 1;
        assert!(
            command.contains(&format!("--name={name}")),
            "{name}: {command:?}"
        );
        assert!(
            issued.iter().any(|n| n == name),
            "no certificate for {name}"
        );
        assert!(command.contains(&"--api=0.0.0.0:7947".to_string()));
        assert!(command.iter().any(|a| a.starts_with("--join=")), "{name}");
    }
    assert_eq!(nodes, 5);
}

/// What the compose file's one-shot services run, twice (a second `up`): the CA is kept and
/// every node's certificate is written.
#[test]
fn compose_certificate_commands_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let dir_arg = dir.path().to_str().unwrap();
    for _ in 0..2 {
        run(&["certs", "init", "--dir", dir_arg, "--if-missing"]);
        run(&["certs", "issue", "node1", "node2", "--dir", dir_arg]);
    }
    for file in [
        "ca.pem",
        "node1/ca.pem",
        "node1/node1.pem",
        "node1/node1-key.pem",
        "node2/node2.pem",
        "node2/node2-key.pem",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let out = Command::new(BIN)
        .args(["certs", "init", "--dir", dir_arg])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "init without --if-missing overwrote a CA"
    );
}

/// Every agent flag the Kubernetes manifests and the systemd unit pass exists.
#[test]
fn manifests_use_only_real_agent_flags() {
    let help = Command::new(BIN)
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let docs = kustomized();
    let mut args =
        strings(&find(&docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]);
    let unit = std::fs::read_to_string(deploy().join("systemd/quicswim.service")).unwrap();
    // Comment lines hold systemctl's own flags (`enable --now`), not the agent's.
    args.extend(
        unit.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .map(String::from),
    );
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(&format!("{flag} ")), "agent has no {flag}");
    }
}

#[test]
fn completions_and_man_pages_are_generated_from_the_commands() {
    let output = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for (shell, marker) in [
        ("bash", "_quicswim()"),
        ("zsh", "#compdef quicswim"),
        ("fish", "complete -c quicswim"),
    ] {
        let script = output(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("join"), "{shell} completes no agent flags");
    }
    let page = output(&["man"]);
    assert!(page.contains(".TH quicswim 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    output(&["man", "--dir", dir.path().to_str().unwrap()]);
    let agent = std::fs::read_to_string(dir.path().join("quicswim-agent.1")).unwrap();
    assert!(agent.contains("\\-\\-join"), "{agent}");
}
