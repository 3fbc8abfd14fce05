//! What a failed DynamoDB call means (retry later, or a bug), and the
//! backoff between attempts of a write that lost a race.

use super::*;

/// Attempts of one write before giving up with 503. Every write of a user goes
/// through their sequence item, so 50 devices appending at once need up to 50
/// rounds; real users are far below that.
pub(super) const MAX_ATTEMPTS: u32 = 100;

/// Network failures, timeouts, throttling and 5xx are `Unavailable` (retry
/// later); anything else is a bug or a misconfiguration.
pub(super) fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unavailable(
            format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err)),
        ),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || code == "ServiceUnavailable"
            {
                StoreError::Unavailable(code.to_owned())
            } else if code == "ResourceNotFoundException" {
                StoreError::Unavailable(
                    "the DynamoDB table does not exist: run `confab-proxy setup`".into(),
                )
            } else {
                StoreError::Internal(format!(
                    "{code}: {}",
                    service.err().message().unwrap_or_default()
                ))
            }
        }
        _ => StoreError::Unavailable(format!(
            "{}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        )),
    }
}

/// Whether a failed transaction lost a race (retry) rather than failed.
pub(super) fn lost_race(
    err: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match err.as_service_error() {
        Some(E::TransactionCanceledException(e)) => e.cancellation_reasons().iter().any(|r| {
            matches!(
                r.code(),
                Some("ConditionalCheckFailed") | Some("TransactionConflict")
            )
        }),
        _ => false,
    }
}

pub(super) async fn backoff(attempt: u32) {
    tokio::time::sleep(backoff_delay(attempt, ulid::Ulid::new().random())).await;
}

/// Exponential with full jitter (from `random`), capped: contention on one
/// user's sequence clears within a few rounds.
fn backoff_delay(attempt: u32, random: u128) -> Duration {
    let cap = 5u64 * (1u64 << attempt.min(5));
    let jitter = u64::from(random as u16) % cap.max(1);
    Duration::from_millis(1 + jitter)
}

pub(super) fn build<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| StoreError::Internal(format!("request build failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_capped() {
        let longest = |attempt| {
            (0..2_000u128)
                .map(|r| backoff_delay(attempt, r * 7_919))
                .max()
                .unwrap_or_default()
        };
        assert!(longest(0) <= Duration::from_millis(5));
        assert!(longest(3) > longest(0));
        assert_eq!(longest(5), longest(99), "capped");
        assert!(longest(99) <= Duration::from_millis(160));
        assert!(
            backoff_delay(0, 0) >= Duration::from_millis(1),
            "never zero"
        );
    }

    #[test]
    fn timeouts_are_worth_retrying_and_build_errors_are_bugs() {
        let timeout: SdkError<aws_sdk_dynamodb::operation::get_item::GetItemError, ()> =
            SdkError::timeout_error("slow");
        assert!(matches!(classify(timeout), StoreError::Unavailable(_)));
        let refused: Result<()> = build(Err("missing table name"));
        assert!(
            matches!(refused, Err(StoreError::Internal(m)) if m.contains("missing table name"))
        );
    }
}
