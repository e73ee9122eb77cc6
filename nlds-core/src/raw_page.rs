//! A page answer read as it came off the bus, its items left as the JSON the worker wrote.
//!
//! The API answers `GET /api/v2/files` and `GET /api/v2/holdings` with the page the catalogue
//! sent. Decoding a page of 1,000 files (about 560 KB) into [`crate::api::FileEntry`] values and
//! encoding them again took the server more CPU than the rest of the request. [`RawPage::of`]
//! reads only the envelope's frame and the page's counts; [`RawPage::to_json`] writes the same
//! bytes serde would write for the page (a test holds both to that).

use serde::Deserialize;
use serde_json::value::RawValue;

/// Which page an answer carries: [`crate::message::RpcReply`]'s variant, which is also the name
/// of the page's list of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// [`crate::api::FilePage`].
    Files,
    /// [`crate::api::HoldingPage`].
    Holdings,
    /// [`crate::api::TransactionPage`].
    Transactions,
}

impl PageKind {
    fn key(self) -> &'static str {
        match self {
            PageKind::Files => "files",
            PageKind::Holdings => "holdings",
            PageKind::Transactions => "transactions",
        }
    }
}

/// A page of an encoded reply envelope, borrowed from its bytes.
#[derive(Debug)]
pub struct RawPage<'a> {
    pub kind: PageKind,
    items: &'a RawValue,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// The parts of an envelope read here; serde skips the rest without building it.
#[derive(Deserialize)]
struct EnvelopeView<'a> {
    #[serde(borrow)]
    payload: PayloadView<'a>,
}

#[derive(Deserialize)]
struct PayloadView<'a> {
    kind: &'a str,
    #[serde(borrow)]
    body: ReplyView<'a>,
}

/// [`crate::message::RpcReply`] as a page (every other variant reads as no page).
#[derive(Deserialize)]
struct ReplyView<'a> {
    #[serde(borrow, default)]
    files: Option<PageView<'a>>,
    #[serde(borrow, default)]
    holdings: Option<PageView<'a>>,
    #[serde(borrow, default)]
    transactions: Option<PageView<'a>>,
}

#[derive(Deserialize)]
struct PageView<'a> {
    #[serde(borrow, alias = "files", alias = "holdings", alias = "transactions")]
    items: &'a RawValue,
    total: u64,
    limit: u64,
    offset: u64,
}

impl<'a> RawPage<'a> {
    /// The page of kind `kind` the encoded envelope `bytes` answers with; `None` when it holds
    /// anything else (an error, another answer, or bytes that are not an envelope), which the
    /// caller then decodes in full.
    pub fn of(bytes: &'a [u8], kind: PageKind) -> Option<Self> {
        let env: EnvelopeView<'a> = serde_json::from_slice(bytes).ok()?;
        if env.payload.kind != "reply" {
            return None;
        }
        let body = env.payload.body;
        let page = match kind {
            PageKind::Files => body.files,
            PageKind::Holdings => body.holdings,
            PageKind::Transactions => body.transactions,
        }?;
        Some(Self {
            kind,
            items: page.items,
            total: page.total,
            limit: page.limit,
            offset: page.offset,
        })
    }

    /// The page as JSON: the bytes `serde_json::to_vec` gives for the decoded page.
    pub fn to_json(&self) -> Vec<u8> {
        let items = self.items.get();
        let mut out = Vec::with_capacity(items.len() + 96);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.kind.key().as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(items.as_bytes());
        out.extend_from_slice(
            format!(
                ",\"total\":{},\"limit\":{},\"offset\":{}}}",
                self.total, self.limit, self.offset
            )
            .as_bytes(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::api::ApiAction;
    use crate::api::{
        FileEntry, FileLocation, FilePage, FileXattr, HoldingPage, HoldingSummary, Tier,
        TransactionPage,
    };
    use crate::message::{Envelope, Payload, RpcReply};
    use crate::{ErrorCode, PathKind};

    fn reply(r: RpcReply) -> Vec<u8> {
        Envelope::new(
            Uuid::new_v4(),
            "alice",
            "gws",
            ApiAction::Get,
            "job \"quoted\" \\ label",
            Payload::Reply(r),
        )
        .to_json()
    }

    fn file(path: &str) -> FileEntry {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        FileEntry {
            path: path.to_owned(),
            kind: PathKind::File,
            link_target: None,
            size: 4096,
            uid: 1000,
            gid: 1000,
            mode: 0o100644,
            mtime: at,
            holding_id: 7,
            label: "run \"42\"".into(),
            user: "alice".into(),
            group: "gws".into(),
            transaction_id: Uuid::new_v4(),
            ingest_time: at,
            version: 2,
            blake3: Some("ab".repeat(32)),
            locations: vec![FileLocation {
                tier: Tier::Warm,
                bucket: "nlds.7".into(),
                key: "tx/a/b".into(),
            }],
            recalling: true,
            last_access: Some(at),
            access_count: 3,
            xattrs: vec![FileXattr::new("user.k".into(), b"v\n", "dgo=".into())],
        }
    }

    #[test]
    fn a_file_page_is_forwarded_byte_for_byte_as_serde_writes_it() {
        let page = FilePage {
            files: vec![
                file("/a/caf\\xe9.txt"),
                file("/a/new\nline"),
                file("/b/\u{1F600}"),
            ],
            total: 1234,
            limit: 3,
            offset: 9,
        };
        let bytes = reply(RpcReply::Files(page.clone()));
        let raw = RawPage::of(&bytes, PageKind::Files).expect("a files page");
        assert_eq!((raw.total, raw.limit, raw.offset), (1234, 3, 9));
        assert_eq!(raw.to_json(), serde_json::to_vec(&page).unwrap());
        // An empty page too.
        let empty = FilePage {
            files: vec![],
            total: 0,
            limit: 1000,
            offset: 0,
        };
        let bytes = reply(RpcReply::Files(empty.clone()));
        let raw = RawPage::of(&bytes, PageKind::Files).unwrap();
        assert_eq!(raw.total, 0);
        assert_eq!(raw.to_json(), serde_json::to_vec(&empty).unwrap());
    }

    #[test]
    fn holding_and_transaction_pages_are_forwarded_as_serde_writes_them() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let holdings = HoldingPage {
            holdings: vec![HoldingSummary {
                id: 3,
                label: "run42".into(),
                user: "alice".into(),
                group: "gws".into(),
                created: at,
                tags: [("project".to_owned(), "ice".to_owned())].into(),
                transactions: vec![Uuid::new_v4()],
                files: 10,
                bytes: 40960,
                warm_files: 10,
                cold_files: 2,
                recalling_files: 1,
                last_access: None,
            }],
            total: 1,
            limit: 100,
            offset: 0,
        };
        let bytes = reply(RpcReply::Holdings(holdings.clone()));
        let raw = RawPage::of(&bytes, PageKind::Holdings).unwrap();
        assert_eq!(raw.to_json(), serde_json::to_vec(&holdings).unwrap());
        // Asked for another kind of page: none.
        assert!(RawPage::of(&bytes, PageKind::Files).is_none());

        let txs = TransactionPage {
            transactions: vec![],
            total: 0,
            limit: 10,
            offset: 0,
        };
        let bytes = reply(RpcReply::Transactions(txs.clone()));
        let raw = RawPage::of(&bytes, PageKind::Transactions).unwrap();
        assert_eq!(raw.to_json(), serde_json::to_vec(&txs).unwrap());
    }

    #[test]
    fn anything_but_a_page_is_left_to_the_full_decoder() {
        let err = reply(RpcReply::Error(crate::error::ApiError::new(
            ErrorCode::NotFound,
            "no holding labelled \"x\"",
        )));
        assert!(RawPage::of(&err, PageKind::Files).is_none());
        assert!(RawPage::of(&reply(RpcReply::Recorded), PageKind::Files).is_none());
        assert!(RawPage::of(b"not json", PageKind::Files).is_none());
        assert!(RawPage::of(b"{\"payload\":{\"kind\":\"put_request\",\"body\":{\"files\":{\"files\":[],\"total\":0,\"limit\":1,\"offset\":0}}}}", PageKind::Files).is_none());
    }
}
