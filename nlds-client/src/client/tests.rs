//! Unit tests of the client: retry delays, a JWT's expiry, URLs and their validation.

use super::account::{base64url_decode, jwt_expiry};
use super::*;

#[test]
fn delays_grow_are_jittered_and_capped() {
    let p = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(300),
    };
    for _ in 0..50 {
        let d1 = p.delay(1);
        assert!(
            d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
            "{d1:?}"
        );
        let d2 = p.delay(2);
        assert!(
            d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200),
            "{d2:?}"
        );
        let d9 = p.delay(9);
        assert!(
            d9 >= Duration::from_millis(150) && d9 <= Duration::from_millis(300),
            "{d9:?}"
        );
    }
    assert_eq!(RetryPolicy::none().attempts, 1);
}

#[test]
fn jwt_expiry_is_read_from_the_token() {
    assert_eq!(base64url_decode("aGVsbG8").unwrap(), b"hello");
    assert_eq!(base64url_decode("aGVsbG8h").unwrap(), b"hello!");
    assert_eq!(base64url_decode("_-8").unwrap(), vec![0xff, 0xef]);
    assert!(base64url_decode("a b").is_none());
    // {"sub":"alice","exp":1800000000}
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTgwMDAwMDAwMH0.c2ln";
    assert_eq!(
        jwt_expiry(token).unwrap().to_rfc3339(),
        "2027-01-15T08:00:00+00:00"
    );
    assert_eq!(jwt_expiry("opaque-token-123"), None);
    assert_eq!(jwt_expiry("a.b.c.d"), None);
}

#[test]
fn urls_and_validation() {
    let c = Client::new("https://nlds.example.org/base/", "t0k3n").unwrap();
    assert_eq!(c.base_url(), "https://nlds.example.org/base");
    assert_eq!(c.url("/put"), "https://nlds.example.org/base/api/v2/put");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("t0k3n"), "{dbg}");
    assert!(matches!(
        Client::new("nlds.example.org", "t"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new("ftp://nlds.example.org", "t"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new("https://h/?a=b", "t"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new("https://h", "  "),
        Err(Error::Config(_))
    ));
}
