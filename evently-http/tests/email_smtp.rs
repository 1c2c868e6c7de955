//! E-mail delivery end to end against a real SMTP server: Python's aiosmtpd, started by the test on a
//! free loopback port. Python's own `email` parser decodes what arrives, so the message is checked by an
//! independent MIME implementation. Needs `python3` with `aiosmtpd` (`python3 -m pip install aiosmtpd`);
//! without them the test fails, it does not skip.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{event, user};
use evently_core::{
    BookingRequest, BookingStatus, Changes, Evently, JobPayload, NewJob, NotificationKind, Role,
    Store,
};
use evently_http::notify::{EmailNotifier, MailTransport};
use evently_http::worker::Worker;
use evently_storage::SqliteStore;
use serde_json::Value;

/// An SMTP server that refuses recipients whose address starts with `reject` (550) and, for each
/// accepted message, writes `<n>/summary.json` (envelope, headers, bodies, attachment list) and the
/// decoded attachments next to it.
const SERVER: &str = r#"
import email, email.policy, json, os, socket, sys, threading
from aiosmtpd.controller import Controller

out = sys.argv[1]
lock = threading.Lock()

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with lock:
            n = len([d for d in os.listdir(out) if not d.startswith(".")])
            tmp = os.path.join(out, ".tmp-%d" % n)
            os.makedirs(tmp)
            parts, text, html = [], None, None
            for i, part in enumerate(msg.walk()):
                if part.is_multipart():
                    continue
                ctype = part.get_content_type()
                fname = part.get_filename()
                if fname:
                    data = part.get_payload(decode=True)
                    with open(os.path.join(tmp, "attachment-%d.bin" % i), "wb") as f:
                        f.write(data)
                    parts.append({"content_type": ctype, "filename": fname,
                                  "file": "attachment-%d.bin" % i,
                                  "disposition": part.get_content_disposition()})
                elif ctype == "text/plain":
                    text = part.get_content()
                elif ctype == "text/html":
                    html = part.get_content()
            summary = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "subject": str(msg["Subject"]),
                "to": str(msg["To"]),
                "from": str(msg["From"]),
                "message_id": str(msg["Message-ID"]),
                "date": str(msg["Date"]),
                "text": text,
                "html": html,
                "attachments": parts,
            }
            with open(os.path.join(tmp, "summary.json"), "w") as f:
                json.dump(summary, f)
            os.rename(tmp, os.path.join(out, str(n)))
        return "250 Message accepted for delivery"

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print(port, flush=True)
sys.stdin.read()  # until the test closes stdin or is gone
controller.stop()
"#;

/// The running server; killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
            .unwrap_or_else(|e| {
                panic!("python3 is needed for this test and could not be run: {e}")
            });
        assert!(
            probe.status.success(),
            "Python's aiosmtpd is needed for this test: install it with \
             `python3 -m pip install aiosmtpd` ({})",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER).expect("write server script");
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).expect("inbox dir");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&inbox)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the SMTP port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP server did not start (printed {line:?})"));
        Self { child, port, dir }
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    /// Every message received so far, in arrival order: (its directory, its summary).
    fn messages(&self) -> Vec<(PathBuf, Value)> {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(self.inbox())
            .expect("read inbox")
            .filter_map(|e| {
                let e = e.expect("dir entry");
                let n = e.file_name().to_str()?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        dirs.sort();
        dirs.into_iter()
            .map(|(_, d)| {
                let summary = std::fs::read(d.join("summary.json")).expect("summary");
                (d, serde_json::from_slice(&summary).expect("summary json"))
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine_with(store: Arc<dyn Store>, transport: MailTransport) -> Evently {
    let email = EmailNotifier::new(
        transport,
        "Evently <tickets@example.com>".parse().expect("from"),
    );
    Evently::builder()
        .store(store)
        .notifier(Arc::new(email))
        .build()
        .expect("engine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_with_pdf_tickets_arrives_over_smtp_once() {
    let server = SmtpServer::start();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let smtp = MailTransport::smtp(
        &format!("smtp://127.0.0.1:{}", server.port),
        Duration::from_secs(10),
    )
    .expect("smtp transport");
    let engine = engine_with(store.clone(), smtp);

    let (_, admin) = user(&engine, "admin@example.com", "Admin", Role::Admin).await;
    let (ada, ada_actor) = user(&engine, "ada@example.com", "Ada Lovelace", Role::User).await;
    let ev = event(&engine, &admin).await;
    let booking = engine
        .book(&ada_actor, BookingRequest::new(ev.id, 2))
        .await
        .expect("book");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    let tickets = engine
        .tickets(&ada_actor, booking.id)
        .await
        .expect("tickets");
    assert_eq!(tickets.len(), 2);

    let worker = Worker::new(engine.clone()).batch_size(2);
    let pass = worker.run_once().await;
    assert_eq!(pass.failures, 0, "{pass:?}");
    // Two welcomes and one confirmation, over two batches.
    assert_eq!(pass.jobs.claimed, 3, "{pass:?}");
    assert_eq!(pass.jobs.succeeded, 3, "{pass:?}");

    let messages = server.messages();
    assert_eq!(messages.len(), 3, "{messages:?}");
    let confirmation = engine
        .notifications(&ada_actor, evently_core::NotificationQuery::newest(10))
        .await
        .expect("notifications")
        .into_iter()
        .find(|n| n.kind == NotificationKind::BookingConfirmed)
        .expect("confirmation notification");
    assert!(confirmation.sent_at.is_some(), "marked sent");
    let (dir, m) = messages
        .iter()
        .find(|(_, m)| m["subject"] == "Booking confirmed: RustConf")
        .expect("the confirmation e-mail arrived");
    assert_eq!(m["rcpt_tos"], serde_json::json!([ada.email]));
    assert_eq!(m["mail_from"], "tickets@example.com");
    assert!(m["to"].as_str().unwrap().contains("ada@example.com"), "{m}");
    assert_eq!(
        m["message_id"],
        format!("<notification-{}@example.com>", confirmation.id)
    );
    let text = m["text"].as_str().expect("text part");
    let html = m["html"].as_str().expect("html part");
    assert!(text.starts_with("Hello Ada Lovelace,"), "{text}");
    assert!(
        html.contains("<h1>Booking confirmed: RustConf</h1>"),
        "{html}"
    );
    for t in &tickets {
        assert!(text.contains(&t.number), "{text}");
        assert!(html.contains(&t.number), "{html}");
    }

    let attachments = m["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    for t in &tickets {
        let a = attachments
            .iter()
            .find(|a| a["filename"] == format!("ticket-{}.pdf", t.number))
            .unwrap_or_else(|| panic!("no attachment for {} in {attachments:?}", t.number));
        assert_eq!(a["content_type"], "application/pdf");
        assert_eq!(a["disposition"], "attachment");
        let pdf = std::fs::read(dir.join(a["file"].as_str().unwrap())).expect("pdf");
        assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
        assert!(contains(&pdf, t.number.as_bytes()), "ticket number in PDF");
        assert!(contains(&pdf, b"RustConf") && contains(&pdf, b"Ada Lovelace"));
        assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    }

    // Running the jobs again sends nothing more.
    let again = worker.run_once().await;
    assert_eq!(again.jobs.claimed, 0, "{again:?}");
    assert_eq!(server.messages().len(), 3);

    // A duplicate delivery job for the already-sent confirmation is a no-op too.
    let mut tx = store.begin().await.expect("tx");
    tx.apply(Changes {
        new_jobs: vec![
            (NewJob::now(
                JobPayload::DeliverNotification {
                    notification_id: confirmation.id,
                },
                Utc::now(),
            ))
            .clone(),
        ],
        ..Changes::default()
    })
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    let dup = worker.run_once().await;
    assert_eq!((dup.jobs.claimed, dup.jobs.succeeded), (1, 1), "{dup:?}");
    assert_eq!(server.messages().len(), 3, "no second copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_fails_the_job_for_good() {
    let server = SmtpServer::start();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let smtp = MailTransport::smtp(
        &format!("smtp://127.0.0.1:{}", server.port),
        Duration::from_secs(10),
    )
    .expect("smtp transport");
    let engine = engine_with(store, smtp);
    let (_, actor) = user(&engine, "rejected@example.com", "Rex", Role::User).await;
    let summary = engine.run_jobs(10).await.expect("run jobs");
    assert_eq!((summary.claimed, summary.dead), (1, 1), "{summary:?}");
    assert!(server.messages().is_empty());
    let n = engine
        .notifications(&actor, evently_core::NotificationQuery::newest(10))
        .await
        .expect("notifications");
    assert_eq!(n.len(), 1);
    assert!(
        n[0].sent_at.is_none(),
        "a refused message is not marked sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retried_later() {
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let smtp = MailTransport::smtp(&format!("smtp://127.0.0.1:{port}"), Duration::from_secs(5))
        .expect("smtp transport");
    let engine = engine_with(store, smtp);
    user(&engine, "ada@example.com", "Ada", Role::User).await;
    let summary = engine.run_jobs(10).await.expect("run jobs");
    assert_eq!((summary.claimed, summary.retried), (1, 1), "{summary:?}");
}

#[tokio::test]
async fn the_file_transport_writes_one_file_per_notification_even_when_retried() {
    let out = tempfile::tempdir().expect("temp dir");
    let mail_dir = out.path().join("mail");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("sqlite"));
    let engine = engine_with(store.clone(), MailTransport::Directory(mail_dir.clone()));
    let (_, admin) = user(&engine, "admin@example.com", "Admin", Role::Admin).await;
    let (ada, ada_actor) = user(&engine, "ada@example.com", "Ada", Role::User).await;
    let ev = event(&engine, &admin).await;
    let booking = engine
        .book(&ada_actor, BookingRequest::new(ev.id, 1))
        .await
        .expect("book");
    engine.cancel(&ada_actor, booking.id).await.expect("cancel");
    let pass = Worker::new(engine.clone()).run_once().await;
    assert_eq!((pass.jobs.succeeded, pass.failures), (4, 0), "{pass:?}");
    let files = eml_files(&mail_dir);
    assert_eq!(files.len(), 4, "{files:?}");

    // Deliver the confirmation again by hand (as a retry after a crash would): same file, same bytes.
    let confirmation = engine
        .notifications(&ada_actor, evently_core::NotificationQuery::newest(10))
        .await
        .expect("notifications")
        .into_iter()
        .find(|n| n.kind == NotificationKind::BookingConfirmed)
        .expect("confirmation");
    let path = mail_dir.join(format!("{}.eml", confirmation.id));
    let before = std::fs::read(&path).expect("confirmation file");
    let email = EmailNotifier::new(
        MailTransport::Directory(mail_dir.clone()),
        "Evently <tickets@example.com>".parse().expect("from"),
    );
    let event_now = engine.event(ev.id).await.expect("event");
    let tickets = engine
        .tickets(&ada_actor, booking.id)
        .await
        .expect("tickets");
    evently_core::Notifier::notify(
        &email,
        evently_core::ports::Delivery {
            user: &ada,
            notification: &confirmation,
            event: Some(&event_now),
            tickets: &tickets,
            push_subscriptions: &[],
        },
    )
    .await
    .expect("redeliver");
    assert_eq!(eml_files(&mail_dir).len(), 4);
    assert!(
        std::fs::read(&path).expect("file") == before,
        "the re-delivered message is byte-identical"
    );
    let text = String::from_utf8_lossy(&before);
    assert!(
        text.contains("Subject: Booking confirmed: RustConf"),
        "{text}"
    );
    assert!(text.contains("application/pdf"), "{text}");
    let cancelled = engine
        .notifications(&ada_actor, evently_core::NotificationQuery::newest(10))
        .await
        .expect("notifications")
        .into_iter()
        .find(|n| n.kind == NotificationKind::BookingCancelled)
        .expect("cancellation");
    let cancel_mail =
        std::fs::read_to_string(mail_dir.join(format!("{}.eml", cancelled.id))).expect("file");
    assert!(cancel_mail.contains("Subject: Booking cancelled: RustConf"));
    assert!(
        !cancel_mail.contains("application/pdf"),
        "no ticket on a cancellation"
    );
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("mail dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
