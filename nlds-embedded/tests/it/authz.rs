//! Authorisation rules of issue 11 (embedded mode, static tokens, both APIs):
//!
//! * a per-group role named `admin` is not a service operator: it is MANAGER of that group
//!   (item 3);
//! * a client-chosen transaction id belongs to one user, group and action: reusing another's is a
//!   409 and changes nothing of theirs (item 4);
//! * outside the caller's read scope, a holding answers exactly like one that does not exist
//!   (item 6).

use std::time::Duration;

use nlds_core::State;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::embedded::start_embedded;
use crate::helpers::{Api, temp};

const ALICE: &str = "authz-alice-token-0123456789";
const BOB: &str = "authz-bob-token-0123456789ab";
const CAROL: &str = "authz-carol-token-012345678";
/// `roles = { ocean = "admin" }`, no operator flag.
const OLGA: &str = "authz-olga-token-0123456789";
const ROOT: &str = "authz-root-token-0123456789";

fn tokens(data: &std::path::Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{BOB}\"\nuser = \"bob\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"ocean\"]\n\
             [[token]]\ntoken = \"{OLGA}\"\nuser = \"olga\"\ngroups = [\"ocean\"]\nroles = {{ ocean = \"admin\" }}\n\
             [[token]]\ntoken = \"{ROOT}\"\nuser = \"root\"\ngroups = [\"ops\"]\nadmin = true\n"
        ),
    )
    .unwrap();
}

/// One HTTP call; the legacy API's success bodies (a JSON string holding JSON) are unwrapped.
async fn call(
    url: &str,
    token: &str,
    method: Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .query(query);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let v = match v {
        Value::String(s) if path.starts_with("/api/1.0.0") => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        v => v,
    };
    (status, v)
}

/// Alice's holding of two files, labelled `label`, put with a transaction id she chose.
async fn alice_holding(alice: &Api, label: &str, tid: Uuid) -> (i64, String, String) {
    let src = temp();
    let file = src.path().join("a.txt");
    std::fs::write(&file, b"alice's data").unwrap();
    std::fs::write(src.path().join("b.txt"), b"more").unwrap();
    let src = src.keep();
    let put = alice
        .put_and_wait(json!({"paths": [file, src.join("b.txt")], "label": label,
            "transaction_id": tid}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    (
        put.holding_id.unwrap(),
        file.to_string_lossy().into_owned(),
        src.join("b.txt").to_string_lossy().into_owned(),
    )
}

/// Alice's holding as she sees it: label and file count.
async fn alice_view(alice: &Api, h: i64) -> (String, u64) {
    let (s, v) = alice.get(&format!("/api/v2/holdings?holding_id={h}")).await;
    assert_eq!(s, 200, "{v}");
    (
        v["holdings"][0]["label"].as_str().unwrap().to_owned(),
        v["holdings"][0]["files"].as_u64().unwrap(),
    )
}

/// Item 3: `roles = { ocean = "admin" }` makes a manager of ocean, not an operator: no relabel,
/// delete or keep_owner on climate's holding; the operator flag still does all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_group_admin_role_is_no_operator() {
    let data = temp();
    tokens(data.path());
    let e = start_embedded(data.path()).await;
    let alice = Api::new(&e.url, ALICE);
    let olga = Api::new(&e.url, OLGA);
    let carol = Api::new(&e.url, CAROL);
    let root = Api::new(&e.url, ROOT);
    let (h, file, _) = alice_holding(&alice, "alice-run", Uuid::new_v4()).await;
    let before = alice_view(&alice, h).await;

    // Relabel, delete and keep_owner, each checked (the refusals are collected so that one
    // run shows every one that is let through).
    let mut let_through: Vec<String> = Vec::new();
    // Relabel and delete another group's holding: not found (outside her scope).
    let (s, v) = olga
        .post(
            "/api/v2/meta",
            &json!({"holding_id": h, "new_label": "relabelled", "new_tags": {"by": "olga"}}),
        )
        .await;
    if s != 404 {
        let_through.push(format!("olga relabelled climate's holding: {s} {v}"));
    }
    // keep_owner is for operators only.
    let target = temp();
    let (s, v) = olga
        .post(
            "/api/v2/get",
            &json!({"paths": [file], "keep_owner": true, "target": target.path()}),
        )
        .await;
    if s == 202 {
        olga.wait(
            v["transaction_id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    }
    if s != 403 || !v["error"]["message"].to_string().contains("keep_owner") {
        let_through.push(format!("olga may not keep_owner: {s} {v}"));
    }
    // A path of it: accepted as any path delete, and fails (not found) deleting nothing.
    let (s, v) = olga
        .post("/api/v2/delete", &json!({"paths": [file], "holding_id": h}))
        .await;
    if s == 202 {
        let t = olga
            .wait(
                v["transaction_id"].as_str().unwrap(),
                Duration::from_secs(60),
            )
            .await;
        if t.state != State::Failed {
            let_through.push(format!("olga deleted a file of climate's holding: {t:?}"));
        }
    } else if s != 404 {
        let_through.push(format!("olga's path delete: {s} {v}"));
    }
    let (s, v) = olga.post("/api/v2/delete", &json!({"holding_id": h})).await;
    if s != 404 {
        let_through.push(format!("olga deleted climate's holding: {s} {v}"));
    }
    assert!(let_through.is_empty(), "{let_through:#?}");
    assert_eq!(
        alice_view(&alice, h).await,
        before,
        "nothing of alice's changed"
    );

    // Who olga is: a manager of ocean, no operator.
    let (s, who) = olga.get("/api/v2/whoami").await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(who["admin"], false, "{who}");
    assert_eq!(who["roles"]["ocean"], "manager", "{who}");

    // In ocean she is a manager: she may change carol's holding.
    let src = temp();
    let cf = src.path().join("c.txt");
    std::fs::write(&cf, b"carol").unwrap();
    let put = carol
        .put_and_wait(json!({"paths": [cf], "label": "carol-run"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let (s, v) = olga
        .post(
            "/api/v2/meta",
            &json!({"holding_id": put.holding_id, "new_tags": {"by": "olga"}}),
        )
        .await;
    assert_eq!(s, 200, "a manager of ocean changes ocean's holdings: {v}");

    // The operator (admin = true) still may do all of it.
    let (s, v) = root
        .post(
            "/api/v2/meta",
            &json!({"holding_id": h, "new_tags": {"by": "root"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = root
        .post(
            "/api/v2/get",
            &json!({"paths": [file], "keep_owner": true, "target": target.path()}),
        )
        .await;
    assert_eq!(s, 202, "the operator may keep_owner: {v}");
    let t = root
        .wait(
            v["transaction_id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
    assert!(t.state.is_final(), "{t:#?}");
    let (s, v) = root.post("/api/v2/delete", &json!({"holding_id": h})).await;
    assert_eq!(s, 202, "the operator may delete any holding: {v}");
    let (s, _) = alice.get(&format!("/api/v2/holdings?holding_id={h}")).await;
    assert_eq!(s, 404, "deleted by the operator");
    e.stop().await.unwrap();
}

/// Item 4: bob reusing alice's transaction ids (a put's, a get's, a delete's) in a put, a get and
/// a delete, on both APIs, gets 409 naming the id only; alice's transactions stay hers, the audit
/// has nothing of bob's under her ids, and alice's own retries are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_ids_are_not_shared_across_users() {
    let data = temp();
    tokens(data.path());
    let e = start_embedded(data.path()).await;
    let alice = Api::new(&e.url, ALICE);
    let bob = Api::new(&e.url, BOB);
    let root = Api::new(&e.url, ROOT);
    let (put_id, get_id, del_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (h, file, other) = alice_holding(&alice, "alice-run", put_id).await;
    let target = temp();
    let got = alice
        .get_and_wait(
            json!({"paths": [file], "label": "alice-run", "target": target.path(),
            "transaction_id": get_id}),
        )
        .await;
    assert_eq!(got.state, State::Complete, "{got:#?}");
    let (s, v) = alice
        .post(
            "/api/v2/delete",
            &json!({"paths": [other], "label": "alice-run", "transaction_id": del_id}),
        )
        .await;
    assert_eq!((s, v["api_action"].as_str()), (202, Some("del")), "{v}");
    let mine = |id: Uuid| {
        let alice = &alice;
        async move { alice.wait(&id.to_string(), Duration::from_secs(60)).await }
    };
    let before: Vec<_> = vec![mine(put_id).await, mine(get_id).await, mine(del_id).await];

    // Bob's own things to put, get and delete.
    let src = temp();
    let bf = src.path().join("bob.txt");
    std::fs::write(&bf, b"bob").unwrap();
    let put = bob
        .put_and_wait(json!({"paths": [bf], "label": "bob-run"}))
        .await;
    assert_eq!(put.state, State::Complete, "{put:#?}");
    let bf = bf.to_string_lossy().into_owned();
    let bob_target = temp();
    // Every reuse is checked and the ones let through are collected, so that one run shows all.
    let mut let_through: Vec<String> = Vec::new();
    let mut conflict = |s: u16, v: &Value, id: Uuid, what: &str| {
        let text = v.to_string();
        if s != 409 || !text.contains(&id.to_string()) || !text.contains("choose another") {
            let_through.push(format!("{what} with alice's id {id}: {s} {text}"));
        }
        if text.contains("alice") {
            let_through.push(format!(
                "{what} with alice's id {id} reveals her: {s} {text}"
            ));
        }
    };
    for id in [put_id, get_id, del_id] {
        // Native.
        let (s, v) = bob
            .post(
                "/api/v2/get",
                &json!({"paths": [bf], "label": "bob-run", "target": bob_target.path(),
                    "transaction_id": id}),
            )
            .await;
        conflict(s, &v, id, "native get");
        let (s, v) = bob
            .post(
                "/api/v2/put",
                &json!({"paths": [bf], "label": "bob-run", "transaction_id": id}),
            )
            .await;
        conflict(s, &v, id, "native put");
        let (s, v) = bob
            .post(
                "/api/v2/delete",
                &json!({"paths": [bf], "label": "bob-run", "transaction_id": id}),
            )
            .await;
        conflict(s, &v, id, "native delete");
        // Legacy (the Python client always sends its transaction id).
        let q = |extra: &[(&'static str, String)]| {
            let mut q = vec![
                ("user", "bob".to_owned()),
                ("group", "climate".to_owned()),
                ("transaction_id", id.to_string()),
            ];
            q.extend(extra.iter().cloned());
            q
        };
        let (s, v) = call(
            &e.url,
            BOB,
            Method::PUT,
            "/api/1.0.0/files/",
            &q(&[]),
            Some(json!({"filelist": [bf], "label": "bob-run"})),
        )
        .await;
        conflict(s, &v, id, "legacy put");
        let (s, v) = call(
            &e.url,
            BOB,
            Method::GET,
            "/api/1.0.0/files/",
            &q(&[
                ("filepath", bf.clone()),
                ("label", "bob-run".into()),
                ("target", bob_target.path().to_string_lossy().into_owned()),
            ]),
            None,
        )
        .await;
        conflict(s, &v, id, "legacy get");
        let (s, v) = call(
            &e.url,
            BOB,
            Method::PUT,
            "/api/1.0.0/files/getlist/",
            &q(&[("target", bob_target.path().to_string_lossy().into_owned())]),
            Some(json!({"filelist": [bf], "label": "bob-run"})),
        )
        .await;
        conflict(s, &v, id, "legacy getlist");
        let (s, v) = call(
            &e.url,
            BOB,
            Method::DELETE,
            "/api/1.0.0/files/",
            &q(&[]),
            Some(json!({"filelist": [bf], "label": "bob-run"})),
        )
        .await;
        conflict(s, &v, id, "legacy delete");
    }
    assert!(let_through.is_empty(), "{let_through:#?}");
    // Bob does not see alice's transactions either.
    for id in [put_id, get_id, del_id] {
        let (s, v) = bob.get(&format!("/api/v2/transactions/{id}")).await;
        assert_eq!(s, 404, "{v}");
    }
    // Nothing of bob's was restored, deleted or put.
    assert_eq!(std::fs::read_dir(bob_target.path()).unwrap().count(), 0);
    let (s, v) = bob.get("/api/v2/holdings?label=bob-run").await;
    assert_eq!(
        (s, v["holdings"][0]["files"].as_u64()),
        (200, Some(1)),
        "{v}"
    );

    // Alice's transactions are still hers, unchanged (user, group, action, state, holding).
    for (t, id) in before.iter().zip([put_id, get_id, del_id]) {
        let now = mine(id).await;
        assert_eq!(
            (
                &now.user,
                &now.group,
                now.api_action,
                now.state,
                now.holding_id
            ),
            (&t.user, &t.group, t.api_action, t.state, t.holding_id),
            "{id}"
        );
        assert_eq!(now.user, "alice");
        assert_eq!(now.sub_records.len(), t.sub_records.len(), "{id}");
    }
    assert_eq!(alice_view(&alice, h).await, ("alice-run".to_owned(), 1));

    // Alice's own retries are accepted and find her transactions.
    let (s, v) = alice
        .post(
            "/api/v2/delete",
            &json!({"paths": [other], "label": "alice-run", "transaction_id": del_id}),
        )
        .await;
    assert_eq!(s, 202, "alice's retried delete: {v}");
    assert_eq!(v["transaction_id"], del_id.to_string());
    let (s, v) = alice
        .post(
            "/api/v2/get",
            &json!({"paths": [file], "label": "alice-run", "target": target.path(),
                "overwrite": true, "transaction_id": get_id}),
        )
        .await;
    assert_eq!(s, 202, "alice's retried get: {v}");
    let (s, v) = call(
        &e.url,
        ALICE,
        Method::GET,
        "/api/1.0.0/files/",
        &[
            ("user", "alice".into()),
            ("group", "climate".into()),
            ("transaction_id", get_id.to_string()),
            ("filepath", file.clone()),
            ("label", "alice-run".into()),
            ("target", target.path().to_string_lossy().into_owned()),
        ],
        None,
    )
    .await;
    assert_eq!(s, 202, "alice's retried legacy get: {v}");
    let again = mine(get_id).await;
    assert_eq!(
        (again.user.as_str(), again.state),
        ("alice", State::Complete)
    );
    assert_eq!(mine(del_id).await.user, "alice");

    // The audit has no put, get or delete of bob's under alice's ids (only the refused reads
    // of her transactions he asked about above).
    let (s, v) = root.get("/api/v2/admin/audit?user=bob&limit=10000").await;
    assert_eq!(s, 200, "{v}");
    for r in v["records"].as_array().unwrap() {
        let t = r["transaction_id"].as_str().unwrap_or_default();
        if [put_id, get_id, del_id]
            .iter()
            .any(|id| id.to_string() == t)
        {
            assert_eq!(
                (&r["action"], &r["outcome"]),
                (&json!("stat"), &json!("refused")),
                "bob audited under alice's transaction: {r}"
            );
        }
    }
    e.stop().await.unwrap();
}

/// Replaces each of `what` in the JSON text of `v` with `<X>`, as whole words only (holding 1 is
/// not the 1 in 100001).
fn masked(v: &Value, what: &[&str]) -> String {
    let mut text = v.to_string();
    for w in what {
        let re = regex::Regex::new(&format!(r"\b{}\b", regex::escape(w))).unwrap();
        text = re.replace_all(&text, "<X>").into_owned();
    }
    text
}

/// Item 6: carol (group ocean) naming alice's holding (group climate) by id or label gets the
/// answer of one that does not exist, byte for byte (modulo the id or label), on every endpoint
/// of both APIs, naming nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_scope_answers_like_a_missing_holding() {
    let data = temp();
    tokens(data.path());
    let e = start_embedded(data.path()).await;
    let alice = Api::new(&e.url, ALICE);
    let alice_put = Uuid::new_v4();
    let (h, file, _) = alice_holding(&alice, "alice-run", alice_put).await;
    let before = alice_view(&alice, h).await;
    let missing = h + 100_000;
    let src = temp();
    let cf = src.path().join("c.txt");
    std::fs::write(&cf, b"carol").unwrap();
    let cf = cf.to_string_lossy().into_owned();
    let target = temp();
    let tgt = target.path().to_string_lossy().into_owned();

    // (method, path, query, body) with `{ID}` / `{LABEL}` / `{TID}` to fill in.
    type Probe = (
        Method,
        &'static str,
        Vec<(&'static str, String)>,
        Option<Value>,
    );
    let native = |by_id: bool| -> Vec<Probe> {
        let sel = if by_id {
            json!({"holding_id": "{ID}"})
        } else {
            json!({"label": "{LABEL}"})
        };
        let q = if by_id {
            ("holding_id", "{ID}".to_owned())
        } else {
            ("label", "{LABEL}".to_owned())
        };
        let with = |extra: Value| {
            let mut b = sel.clone();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            Some(b)
        };
        vec![
            (
                Method::POST,
                "/api/v2/meta",
                vec![],
                with(json!({"new_label": "stolen", "new_tags": {"x": "y"}})),
            ),
            (Method::GET, "/api/v2/holdings", vec![q.clone()], None),
            (
                Method::GET,
                "/api/v2/holdings",
                vec![q.clone(), ("groupall", "true".into())],
                None,
            ),
            (Method::GET, "/api/v2/files", vec![q.clone()], None),
            (
                Method::POST,
                "/api/v2/get",
                vec![],
                with(json!({"paths": [file], "target": tgt})),
            ),
            (
                Method::POST,
                "/api/v2/get",
                vec![],
                with(json!({"paths": [file], "target": tgt, "dry_run": true})),
            ),
            (Method::POST, "/api/v2/delete", vec![], with(json!({}))),
            (
                Method::POST,
                "/api/v2/delete",
                vec![],
                with(json!({"groupall": true, "dry_run": true})),
            ),
            (Method::POST, "/api/v2/undelete", vec![], with(json!({}))),
        ]
    };
    let legacy = |by_id: bool| -> Vec<Probe> {
        let sel = if by_id {
            ("holding_id", "{ID}".to_owned())
        } else {
            ("label", "{LABEL}".to_owned())
        };
        let me = |extra: Vec<(&'static str, String)>| {
            let mut q = vec![
                ("user", "carol".to_owned()),
                ("group", "ocean".to_owned()),
                sel.clone(),
            ];
            q.extend(extra);
            q
        };
        vec![
            (Method::GET, "/api/1.0.0/catalog/list/", me(vec![]), None),
            (Method::GET, "/api/1.0.0/catalog/find/", me(vec![]), None),
            (
                Method::POST,
                "/api/1.0.0/catalog/meta/",
                me(vec![]),
                Some(json!({"new_label": "stolen"})),
            ),
            (
                Method::GET,
                "/api/1.0.0/files/",
                me(vec![
                    ("transaction_id", "{TID}".into()),
                    ("filepath", file.clone()),
                    ("target", tgt.clone()),
                ]),
                None,
            ),
            (
                Method::DELETE,
                "/api/1.0.0/files/",
                me(vec![("transaction_id", "{TID}".into())]),
                Some(json!({"filelist": []})),
            ),
        ]
    };
    let fill = |s: &str, id: i64, label: &str, tid: &str| {
        s.replace("{ID}", &id.to_string())
            .replace("{LABEL}", label)
            .replace("{TID}", tid)
    };
    let send = |p: &Probe, id: i64, label: &'static str| {
        let url = e.url.clone();
        let (method, path, q, body) = p.clone();
        let tid = Uuid::new_v4().to_string();
        async move {
            let q: Vec<(&str, String)> = q
                .iter()
                .map(|(k, v)| (*k, fill(v, id, label, &tid)))
                .collect();
            let body = body.map(|b| {
                let text = fill(&b.to_string(), id, label, &tid);
                // A number where the template had the string "{ID}".
                let text = text.replace(&format!("\"{id}\""), &id.to_string());
                serde_json::from_str::<Value>(&text).unwrap()
            });
            let (s, v) = call(&url, CAROL, method, path, &q, body).await;
            (s, v, tid)
        }
    };
    let mut probes: Vec<(bool, Probe)> = Vec::new();
    for by_id in [true, false] {
        probes.extend(native(by_id).into_iter().map(|p| (by_id, p)));
        probes.extend(legacy(by_id).into_iter().map(|p| (by_id, p)));
    }
    for (by_id, p) in &probes {
        let what = format!("{} {} {:?} {:?}", p.0, p.1, p.2, p.3);
        let (s1, v1, t1) = send(p, h, "alice-run").await;
        let (s2, v2, t2) = send(p, missing, "no-such-run").await;
        let (a, b) = if *by_id {
            (
                masked(&v1, &[&h.to_string(), &t1]),
                masked(&v2, &[&missing.to_string(), &t2]),
            )
        } else {
            (
                masked(&v1, &["alice-run", &t1]),
                masked(&v2, &["no-such-run", &t2]),
            )
        };
        assert_eq!(
            (s1, &a),
            (s2, &b),
            "{what}: alice's holding and a missing one answer differently"
        );
        if p.1.starts_with("/api/v2") && p.1 != "/api/v2/undelete" {
            let dry = p.3.as_ref().is_some_and(|b| b["dry_run"] == true);
            assert!(s1 == 404 || (dry && s1 == 200), "{what}: {s1} {v1}");
        }
        for secret in ["alice", "climate"] {
            assert!(!a.contains(secret), "{what} names {secret}: {a}");
        }
    }

    // The legacy meta's text: the same failure as for a missing holding, naming nothing.
    let (s, v) = call(
        &e.url,
        CAROL,
        Method::POST,
        "/api/1.0.0/catalog/meta/",
        &[
            ("user", "carol".into()),
            ("group", "ocean".into()),
            ("holding_id", h.to_string()),
        ],
        Some(json!({"new_label": "stolen"})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let failure = v["details"]["failure"].as_str().unwrap_or_default();
    assert!(!failure.is_empty(), "{v}");
    assert!(
        !failure.contains("alice") && !failure.contains("belongs"),
        "{failure}"
    );

    // A transaction of alice's, by id: 404 as a missing one.
    let t2 = Uuid::new_v4();
    let carol = Api::new(&e.url, CAROL);
    let (s1, v1) = carol
        .get(&format!("/api/v2/transactions/{alice_put}"))
        .await;
    let (s2, v2) = carol.get(&format!("/api/v2/transactions/{t2}")).await;
    assert_eq!(
        (s1, masked(&v1, &[&alice_put.to_string()])),
        (s2, masked(&v2, &[&t2.to_string()]))
    );
    assert_eq!(s1, 404);
    let (s1, v1) = carol
        .get(&format!("/api/v2/transactions?transaction_id={alice_put}"))
        .await;
    assert_eq!((s1, v1["total"].as_u64()), (200, Some(0)), "{v1}");

    // A put into it: not found, as into a missing one.
    let (s1, v1) = carol
        .post("/api/v2/put", &json!({"paths": [cf], "holding_id": h}))
        .await;
    let (s2, v2) = carol
        .post(
            "/api/v2/put",
            &json!({"paths": [cf], "holding_id": missing}),
        )
        .await;
    assert_eq!(
        (s1, masked(&v1, &[&h.to_string()])),
        (s2, masked(&v2, &[&missing.to_string()]))
    );
    assert_eq!(s1, 404, "{v1}");

    assert_eq!(
        alice_view(&alice, h).await,
        before,
        "nothing of alice's changed"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    e.stop().await.unwrap();
}
