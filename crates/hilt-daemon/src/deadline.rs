//! The caller's deadline, from the `grpc-timeout` header. A handler that
//! waits (for a lease, for a batch) stops a little before it, so its answer
//! still arrives in time: a lease granted to a caller that has already
//! given up would hold the device for nobody until its TTL ran out.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Request;

/// Time left for the answer to travel back once a handler has it.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(100);

/// When the caller stops listening, if it said.
pub fn of<T>(req: &Request<T>) -> Option<Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + parse(v)?)
}

/// `grpc-timeout` as the gRPC spec writes it: up to 8 digits and a unit.
fn parse(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long a handler may wait before answering `deadline`'s caller.
pub fn budget(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .saturating_sub(ANSWER_MARGIN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_refuses_the_rest() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "5", "5x", "-5S", "123456789S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
