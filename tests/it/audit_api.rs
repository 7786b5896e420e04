//! The audit API over real HTTPS: authentication, search and paging, record detail, inclusion
//! proofs, checkpoints and exports, each of them audited in turn.

use gatehouse::audit::merkle::verify_inclusion;
use gatehouse::audit::record::unhex;

use crate::support::{Gateway, run_cli};

fn records(response: &crate::support::Response) -> Vec<serde_json::Value> {
    response.json()["records"].as_array().unwrap().clone()
}

#[test]
fn requests_without_a_valid_token_are_refused_and_audited() {
    let (gw, _dir) = Gateway::start();
    for token in ["", "gha_forged", "not-even-a-token"] {
        let response = gw.api_get("/api/v1/audit/records", token);
        assert_eq!(response.status, 401, "{}", response.body);
        assert_eq!(response.json()["code"], "not_authenticated");
    }
    let token = gw.audit_token();
    // A bad token is an audit-access refusal; no credential at all is a general one.
    let refused = gw.api_get("/api/v1/audit/records?outcome=refused", &token);
    assert_eq!(refused.status, 200, "{}", refused.body);
    let refused = records(&refused);
    assert_eq!(refused.len(), 3, "{refused:?}");
    for r in &refused {
        assert_eq!(r["record"]["outcome"]["reason"], "not_authenticated");
        assert_eq!(r["record"]["ip"], "127.0.0.1");
        // The presented token never reaches the log.
        assert!(!r.to_string().contains("gha_forged"));
    }
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains(&token) && !log.contains("gha_forged"), "a token reached the log");
}

#[test]
fn search_filters_pages_and_every_read_is_audited() {
    let (gw, _dir) = Gateway::start();
    let token = gw.audit_token();
    let page = gw.api_get("/api/v1/audit/records?limit=2", &token);
    assert_eq!(page.status, 200, "{}", page.body);
    let first = records(&page);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["record"]["kind"], "gateway.started");
    assert_eq!(first[0]["seq"], 0);
    let next = page.json()["next_after_seq"].as_u64().unwrap();
    let second = records(&gw.api_get(&format!("/api/v1/audit/records?limit=2&after_seq={next}"), &token));
    assert!(second[0]["seq"].as_u64().unwrap() > next);

    let issued = records(&gw.api_get("/api/v1/audit/records?kind=audit.token_issued&outcome=success", &token));
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["record"]["actor"]["type"], "operator");
    let none = records(&gw.api_get("/api/v1/audit/records?from=2099-01-01T00:00:00Z", &token));
    assert!(none.is_empty());

    let reads = records(&gw.api_get("/api/v1/audit/records?kind=audit.read&limit=100", &token));
    // Every earlier query was itself recorded, with the filters it used but not their values.
    assert!(reads.len() >= 4, "{reads:?}");
    assert_eq!(reads[0]["record"]["actor"]["type"], "api_token");
    let filters = reads.iter().find(|r| r["record"]["details"]["filters"].to_string().contains("kind")).unwrap();
    assert!(!filters.to_string().contains("token_issued"), "{filters}");

    for (query, code) in [
        ("kind=nonsense", "invalid_filter"),
        ("outcome=maybe", "invalid_filter"),
        ("from=yesterday", "invalid_filter"),
        // Valid RFC 3339, but in UTC it falls after the calendar's last year.
        ("from=9999-12-31T23:00:00-01:00", "invalid_filter"),
        ("limit=0", "invalid_filter"),
        ("limit=100000", "invalid_filter"),
        ("unknown=1", "invalid_filter"),
        ("actor=a%20b", "invalid_filter"),
    ] {
        let response = gw.api_get(&format!("/api/v1/audit/records?{query}"), &token);
        assert_eq!(response.status, 400, "{query}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{query}");
        assert!(!response.json()["message"].as_str().unwrap().is_empty());
    }
    let missing = gw.api_get("/api/v1/audit/records/999999", &token);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "no_such_record");
    let not_a_number = gw.api_get("/api/v1/audit/records/abc", &token);
    assert_eq!(not_a_number.status, 400, "{}", not_a_number.body);
    assert_eq!(not_a_number.json()["code"], "invalid_path");
}

#[test]
fn an_inclusion_proof_verifies_against_the_signed_checkpoint() {
    let (gw, _dir) = Gateway::start();
    let token = gw.audit_token();
    // `audit token` signs a checkpoint as it finishes.
    let checkpoint = gw.api_get("/api/v1/audit/checkpoint", &token);
    assert_eq!(checkpoint.status, 200, "{}", checkpoint.body);
    let checkpoint = checkpoint.json();
    let tree_size = checkpoint["tree_size"].as_u64().unwrap();
    let note = checkpoint["note"].as_str().unwrap();
    let root_b64 = note.lines().nth(2).unwrap();
    use base64::Engine;
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD.decode(root_b64).unwrap().try_into().unwrap();

    let proof = gw.api_get("/api/v1/audit/records/0/proof", &token).json();
    assert_eq!(proof["tree_size"], tree_size);
    let leaf = unhex(proof["leaf_hash"].as_str().unwrap()).unwrap();
    let path: Vec<[u8; 32]> =
        proof["path"].as_array().unwrap().iter().map(|h| unhex(h.as_str().unwrap()).unwrap()).collect();
    verify_inclusion(&leaf, 0, tree_size, &path, &root).unwrap();
    let mut wrong = path.clone();
    if let Some(first) = wrong.first_mut() {
        first[0] ^= 1;
        assert!(verify_inclusion(&leaf, 0, tree_size, &wrong, &root).is_err());
    }
    let bad = gw.api_get(&format!("/api/v1/audit/records/{tree_size}/proof?tree_size={tree_size}"), &token);
    assert_eq!(bad.status, 400);
}

#[test]
fn exports_in_every_format_and_the_jsonl_export_verifies() {
    let (gw, _dir) = Gateway::start();
    let token = gw.audit_token();
    let checkpoint = gw.api_get("/api/v1/audit/checkpoint", &token).json();
    let jsonl = gw.api_get("/api/v1/audit/export?format=jsonl", &token);
    assert_eq!(jsonl.status, 200);
    assert_eq!(jsonl.header("content-type"), Some("application/jsonl"));
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.jsonl");
    let pin = dir.path().join("checkpoint.txt");
    std::fs::write(&export, &jsonl.body).unwrap();
    std::fs::write(&pin, checkpoint["note"].as_str().unwrap()).unwrap();
    let data = gw.dir.join("data");
    let (_, key, _) = run_cli(&["audit", "key", "--data-dir", data.to_str().unwrap()], &[]);
    let (code, printed) = crate::audit::verify_export(dir.path(), &export, &pin, key.trim());
    assert_eq!(code, 0, "{printed}");

    let csv = gw.api_get("/api/v1/audit/export?format=csv&kind=gateway.started", &token);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let mut lines = csv.body.lines();
    assert!(lines.next().unwrap().starts_with("seq,recorded,occurred,kind,outcome"));
    assert!(lines.next().unwrap().contains("gateway.started"));

    let fhir = gw.api_get("/api/v1/audit/export?format=fhir", &token);
    assert_eq!(fhir.status, 200);
    let bundle = fhir.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let event = &bundle["entry"][0]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["subtype"][0]["code"], "gateway.started");
    assert_eq!(event["outcome"], "0");
    assert_eq!(event["entity"][0]["what"]["identifier"]["value"], "0");
    assert!(event["source"]["observer"]["display"].as_str().unwrap().starts_with("gatehouse.audit/"));

    let bad = gw.api_get("/api/v1/audit/export?format=pdf", &token);
    assert_eq!(bad.status, 400);
    let exports = gw.api_get("/api/v1/audit/records?kind=audit.exported", &token).json();
    let formats: Vec<&str> = exports["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["details"]["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["jsonl", "csv", "fhir"]);
}

#[test]
fn readiness_drops_while_the_audit_log_cannot_be_written() {
    let (gw, _dir) = Gateway::start();
    let token = gw.audit_token();
    assert_eq!(gw.admin_get("/readyz").status, 200);
    let db = rusqlite::Connection::open(gw.dir.join("data/gatehouse.db")).unwrap();
    // A disk that refuses writes, simulated inside SQLite itself.
    db.execute_batch(
        "CREATE TRIGGER fail_appends BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
    )
    .unwrap();
    let refused = gw.api_get("/api/v1/audit/records", &token);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["code"], "audit_unavailable");
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["code"], "audit_unavailable");
    db.execute_batch("DROP TRIGGER fail_appends;").unwrap();
    assert_eq!(gw.api_get("/api/v1/audit/records", &token).status, 200);
    assert_eq!(gw.admin_get("/readyz").status, 200);
}

#[test]
fn the_gateway_records_its_start_and_stop_and_signs_at_shutdown() {
    let (mut gw, _dir) = Gateway::start();
    gw.terminate();
    assert_eq!(gw.wait_exit(std::time::Duration::from_secs(10)).unwrap().code(), Some(0));
    let data = gw.dir.join("data");
    let (code, out, err) = run_cli(&["audit", "export", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    let stopped = kinds.iter().position(|k| k == "gateway.stopped").expect("no gateway.stopped record");
    assert_eq!(kinds[0], "gateway.started");
    assert_eq!(kinds[stopped + 1], "audit.checkpoint_signed", "no checkpoint after the stop: {kinds:?}");
    let (code, out, _) = run_cli(&["audit", "verify", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
}
