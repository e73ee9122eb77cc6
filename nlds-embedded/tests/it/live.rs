//! Live status (issue 16): `GET /api/v2/transactions/{id}/events` streams a transaction's status
//! from the monitor's announced changes, with keep-alives, resumable with `Last-Event-ID`, ending
//! after the final state; another user's transaction is a 404 like an unknown one; many
//! watchers of one transaction share one reader of its status.

use std::path::Path;
use std::time::{Duration, Instant};

use nlds_core::State;
use nlds_hooks::{control, points};
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, temp};

pub const ALICE: &str = "live-alice-token-0123456789ab";
pub const CAROL: &str = "live-carol-token-0123456789ab";

fn tokens(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        data.join("tokens.toml"),
        format!(
            "[[token]]\ntoken = \"{ALICE}\"\nuser = \"alice\"\ngroups = [\"climate\"]\n\
             [[token]]\ntoken = \"{CAROL}\"\nuser = \"carol\"\ngroups = [\"ocean\"]\n"
        ),
    )
    .unwrap();
}

/// What one read of an event stream gives.
#[derive(Debug)]
enum Frame {
    /// A comment line (a keep-alive).
    Comment,
    /// An event: its name, id and data.
    Event { event: String, id: i64, data: Value },
    /// The stream ended.
    End,
}

/// One open `text/event-stream` response.
pub(crate) struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    pub(crate) async fn open(
        url: &str,
        token: &str,
        tid: &str,
        last_id: Option<i64>,
    ) -> (u16, Self) {
        let mut req = reqwest::Client::new()
            .get(format!("{url}/api/v2/transactions/{tid}/events"))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            Self {
                resp,
                buf: String::new(),
            },
        )
    }

    /// The next frame, waiting at most `within`.
    async fn next(&mut self, within: Duration) -> Frame {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                let mut comment = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        comment = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().expect("numeric event id"));
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && comment {
                    return Frame::Comment;
                }
                return Frame::Event {
                    event,
                    id: id.expect("every event has an id"),
                    data: serde_json::from_str(&data).expect("JSON data"),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "nothing on the stream within {within:?}; have {:?}",
                        self.buf
                    )
                })
                .unwrap();
            match chunk {
                Some(bytes) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Frame::End,
            }
        }
    }

    /// The next event (skipping keep-alives); `None` at the end of the stream.
    pub(crate) async fn next_event(&mut self, within: Duration) -> Option<(i64, Value)> {
        loop {
            match self.next(within).await {
                Frame::Comment => continue,
                Frame::Event { event, id, data } => {
                    assert_eq!(event, "status");
                    return Some((id, data));
                }
                Frame::End => return None,
            }
        }
    }
}

pub async fn server(data: &Path, logs: &Path, pause: &Path) -> ServerProcess {
    tokens(data);
    ServerProcess::start_with(
        data,
        logs,
        "warn,nlds_bus::runtime=info",
        &[(nlds_hooks::ENV, pause.as_os_str())],
        &["server.events_keepalive_secs=1"],
    )
    .await
}

/// A put of three files (`f0`, `f1`, `f2` in `src`) that stops before transfer-put opens the
/// first one: returns its id.
pub async fn paused_put(url: &str, pause: &Path, src: &Path) -> String {
    paused_put_answer(url, pause, src).await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// [`paused_put`], returning the whole 202 answer.
pub async fn paused_put_answer(url: &str, pause: &Path, src: &Path) -> Value {
    for i in 0..3 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    control::arm(pause, points::PUT_BEFORE_OPEN).unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v2/put"))
        .bearer_auth(ALICE)
        .json(&json!({"paths": [src], "label": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.unwrap();
    let dir = pause.to_owned();
    tokio::task::spawn_blocking(move || {
        control::reached(&dir, points::PUT_BEFORE_OPEN, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .expect("transfer-put never reached its first file");
    body
}

/// `monitor.stat` requests the process handled so far (from its log).
fn stat_requests(server: &ServerProcess) -> usize {
    std::fs::read_to_string(&server.stderr)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("handled") && l.contains("key=nlds-api.monitor.stat"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_sees_the_put_move_and_its_stream_ends_after_the_final_state() {
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let server = server(data.path(), logs.path(), pause.path()).await;
    let tid = paused_put(&server.url, pause.path(), src.path()).await;

    let (code, mut alice) = Stream::open(&server.url, ALICE, &tid, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        alice.resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (first_id, first) = alice.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["transaction_id"], tid.as_str());
    let first_state: State = serde_json::from_value(first["state"].clone()).unwrap();
    assert!(!first_state.is_final(), "{first}");

    // Someone else's transaction is not found, exactly like one that does not exist.
    let (code, carol) = Stream::open(&server.url, CAROL, &tid, None).await;
    assert_eq!(code, 404);
    let carols: Value = carol.resp.json().await.unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, none) = Stream::open(&server.url, CAROL, &unknown, None).await;
    assert_eq!(code, 404);
    let nones: Value = none.resp.json().await.unwrap();
    assert_eq!(carols["error"]["code"], nones["error"]["code"]);
    assert_eq!(
        carols["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&tid, "ID"),
        nones["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&unknown, "ID"),
    );

    // Nothing moves while transfer-put is paused: keep-alives (every second here), no event.
    assert!(matches!(
        alice.next(Duration::from_secs(5)).await,
        Frame::Comment
    ));

    control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let mut ids = vec![first_id];
    let mut last = first;
    while let Some((id, status)) = alice.next_event(Duration::from_secs(60)).await {
        ids.push(id);
        last = status;
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "event ids do not grow: {ids:?}"
    );
    assert!(ids.len() >= 2, "no event after the release: {ids:?}");
    assert_eq!(last["state"], "COMPLETE", "{last}");
    assert_eq!(last["files_failed"], 0, "{last}");
    let final_id = *ids.last().unwrap();

    // Reconnecting with the last id seen: nothing newer, and the stream ends at once.
    let (code, mut again) = Stream::open(&server.url, ALICE, &tid, Some(final_id)).await;
    assert_eq!(code, 200);
    assert!(again.next_event(Duration::from_secs(10)).await.is_none());
    // With an older id: the final status, then the end.
    let (_, mut again) = Stream::open(&server.url, ALICE, &tid, Some(first_id)).await;
    let (id, status) = again.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!((id, status["state"].as_str()), (final_id, Some("COMPLETE")));
    assert!(again.next_event(Duration::from_secs(10)).await.is_none());
}

/// 200 clients watching one transaction: every one sees it end, and the monitor is asked for its
/// status about once per change, not once per change per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_watchers_share_one_reader_of_the_status() {
    const WATCHERS: usize = 200;
    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    let server = server(data.path(), logs.path(), pause.path()).await;
    let tid = paused_put(&server.url, pause.path(), src.path()).await;

    let mut streams = Vec::new();
    for _ in 0..WATCHERS {
        let (code, mut s) = Stream::open(&server.url, ALICE, &tid, None).await;
        assert_eq!(code, 200);
        s.next_event(Duration::from_secs(30)).await.unwrap();
        streams.push(s);
    }
    let before = stat_requests(&server);
    control::release(pause.path(), points::PUT_BEFORE_OPEN).unwrap();
    let watchers = streams.into_iter().map(|mut s| {
        tokio::spawn(async move {
            let (mut events, mut last) = (0, Value::Null);
            while let Some((_, status)) = s.next_event(Duration::from_secs(60)).await {
                events += 1;
                last = status;
            }
            (events, last)
        })
    });
    let mut most_events = 0;
    for w in watchers {
        let (events, last) = w.await.unwrap();
        assert_eq!(last["state"], "COMPLETE", "{last}");
        most_events = most_events.max(events);
    }
    // Let the log catch up with the last reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One follower reads per change (and now and then without one); a reader per watcher
    // would have made at least WATCHERS reads per change.
    let reads = stat_requests(&server) - before;
    assert!(most_events >= 1);
    assert!(
        reads < WATCHERS / 4,
        "{reads} status reads for {WATCHERS} watchers of {most_events} changes"
    );
}

/// `nlds wait` (the client library's `wait`) through a restart of the server: the live status
/// stream breaks, the client says it polls instead, rides out the time the server is away, and
/// returns the final state once the restarted server has finished the put.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wait_falls_back_to_polling_through_a_server_restart() {
    use std::sync::{Arc, Mutex};

    use nlds_client::client::{Client, WaitProgress};

    let (data, logs, pause, src) = (temp(), temp(), temp(), temp());
    tokens(data.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let pause_env = [(nlds_hooks::ENV, pause.path().as_os_str())];
    let first =
        ServerProcess::start_at(&listen, data.path(), logs.path(), "warn", &pause_env, &[]).await;
    let tid = paused_put(&first.url, pause.path(), src.path()).await;

    let client = Client::new(&first.url, ALICE).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let waiting = {
        let (seen, tid) = (seen.clone(), tid.parse().unwrap());
        tokio::spawn(async move {
            client
                .wait(
                    tid,
                    Duration::from_millis(200),
                    Some(Duration::from_secs(180)),
                    |p| {
                        seen.lock().unwrap().push(match p {
                            WaitProgress::Status(s) => format!("status {}", s.state),
                            WaitProgress::Polling(..) => "polling".into(),
                            WaitProgress::Unreachable(_) => "unreachable".into(),
                            WaitProgress::Queued => "queued".into(),
                        })
                    },
                )
                .await
        })
    };
    let start = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the wait saw no status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server goes away mid-put (killed), and comes back on the same address and data.
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = temp();
    let second = ServerProcess::start_at(
        &listen,
        data.path(),
        logs.path(),
        "warn",
        &[(nlds_hooks::ENV, fresh.path().as_os_str())],
        &[],
    )
    .await;
    let done = tokio::time::timeout(Duration::from_secs(200), waiting)
        .await
        .expect("the wait returned")
        .unwrap()
        .expect("the wait ends with the final status");
    assert_eq!(done.state, State::Complete, "{done:#?}");
    let seen = seen.lock().unwrap().clone();
    let polling = seen.iter().position(|s| s == "polling");
    assert!(
        polling.is_some(),
        "the broken stream was not reported: {seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("status COMPLETE"),
        "{seen:?}"
    );
    drop(second);
}

/// Distributed mode (RabbitMQ, PostgreSQL, S3): the monitor's changes reach the server over the
/// broker, so a wait that would poll only every hour returns as soon as the put ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_a_wait_returns_at_the_final_state_without_polling() {
    use crate::distributed::{Services, TOKEN, start_roles, start_server};
    use tokio_util::sync::CancellationToken;

    let Some(svc) = Services::new().await else {
        return;
    };
    let settings = svc.settings();
    let stop = CancellationToken::new();
    start_roles(&settings, nlds_workers::run::all_roles(), stop.clone());
    let url = start_server(&settings, stop.clone()).await;
    let src = temp();
    for i in 0..3 {
        std::fs::write(src.path().join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let api = crate::helpers::Api::new(&url, TOKEN);
    let (code, accepted) = api
        .post(
            "/api/v2/put",
            &json!({"paths": [src.path()], "label": "live"}),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let tid = accepted["transaction_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let client = nlds_client::client::Client::new(&url, TOKEN).unwrap();
    let mut polled = false;
    let done = client
        .wait(
            tid,
            Duration::from_secs(3600),
            Some(Duration::from_secs(120)),
            |p| polled |= matches!(p, nlds_client::client::WaitProgress::Polling(..)),
        )
        .await
        .expect("the live status ends the wait, not the hourly poll");
    assert_eq!(done.state, State::Complete, "{done:#?}");
    assert!(!polled, "the live status stream broke");
    stop.cancel();
}
