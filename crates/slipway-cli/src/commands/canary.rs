//! `releases:canary`, `releases:canary:status`, `releases:canary:promote`,
//! `releases:canary:abort`, `releases:canary:off`, `ratelimit`, `ratelimit:set`,
//! `ratelimit:clear`.

use anyhow::bail;
use slipway_types::RateLimit;
use slipway_types::canary::{CanaryPolicy, CanaryView, RateLimitView, parse_rate, percent_text};

use crate::cli::Session;
use crate::table::{self};

/// The options of `releases:canary`, as typed.
pub(crate) struct CanaryArgs<'a> {
    pub percent: u8,
    pub duration: &'a str,
    pub max_error_rate: &'a str,
    pub max_p99: Option<u32>,
    pub sticky: bool,
}

pub(crate) async fn set(session: &mut Session<'_>, args: &CanaryArgs<'_>) -> anyhow::Result<()> {
    let policy = CanaryPolicy {
        percent: args.percent,
        duration_secs: parse_duration(args.duration)?,
        max_error_basis_points: parse_percent(args.max_error_rate)?,
        max_p99_ms: args.max_p99,
        sticky: args.sticky,
    };
    let app = session.app().await?;
    let view = session.client()?.set_canary(&app, &policy).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&format!(
        "The next release of {app} (a push or a promotion) goes out as a canary: {}\n",
        policy_text(&policy)
    ))
}

pub(crate) async fn status(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.canary(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&render(&app, &view))
}

/// `action` is `promote` or `abort`.
pub(crate) async fn settle(session: &mut Session<'_>, action: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let before = client.canary(&app).await?;
    let Some(running) = before.running else {
        bail!("{app} runs no canary: see `slipway releases`");
    };
    let doing = if action == "promote" {
        "Promoting"
    } else {
        "Aborting"
    };
    session.print(&format!("{doing} canary {} of {app}... ", running.release))?;
    match client.settle_canary(&app, action).await {
        Ok(view) if session.global.json => {
            session.print("done\n")?;
            session.print_json(&view)
        }
        Ok(_) => session.print("done\n"),
        Err(error) => {
            session.print("failed\n")?;
            Err(error.into())
        }
    }
}

pub(crate) async fn off(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.clear_canary(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    let running = match &view.running {
        Some(running) => format!(
            " (canary {} keeps running until it is settled)",
            running.release
        ),
        None => String::new(),
    };
    session.print(&format!(
        "Releases of {app} go out to every container at once{running}\n"
    ))
}

pub(crate) async fn rate_limit(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.rate_limit(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&rate_text(&app, &view))
}

pub(crate) async fn set_rate_limit(
    session: &mut Session<'_>,
    rate: &str,
    burst: Option<u32>,
) -> anyhow::Result<()> {
    let (requests, period) = parse_rate(rate).map_err(anyhow::Error::msg)?;
    let limit = RateLimit {
        requests,
        period,
        burst: burst.unwrap_or(requests),
    };
    let app = session.app().await?;
    let view = session.client()?.set_rate_limit(&app, &limit).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&rate_text(&app, &view))
}

pub(crate) async fn clear_rate_limit(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.clear_rate_limit(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    session.print(&rate_text(&app, &view))
}

fn rate_text(app: &str, view: &RateLimitView) -> String {
    match view.limit {
        Some(limit) => format!(
            "{app}: {}/{} per client IP, bursts of {}; more get 429\n",
            limit.requests,
            limit.period.as_str(),
            limit.burst
        ),
        None => format!("{app} has no rate limit\n"),
    }
}

fn policy_text(policy: &CanaryPolicy) -> String {
    let mut text = format!(
        "{}% of requests for {}, rolled back above {} 5xx",
        policy.percent,
        duration_text(policy.duration_secs),
        percent_text(policy.max_error_basis_points)
    );
    if let Some(max) = policy.max_p99_ms {
        text.push_str(&format!(" or a p99 over {max} ms"));
    }
    if policy.sticky {
        text.push_str(", sticky per client");
    }
    text
}

fn render(app: &str, view: &CanaryView) -> String {
    let mut pairs = vec![(
        "Next release",
        view.policy
            .as_ref()
            .map_or_else(|| "goes out at once".to_owned(), policy_text),
    )];
    if let Some(running) = &view.running {
        let failed = if running.requests == 0 {
            "-".to_owned()
        } else {
            #[expect(clippy::cast_precision_loss, reason = "a percentage for display")]
            let percent = running.errors as f64 * 100.0 / running.requests as f64;
            format!("{} ({percent:.1}%)", running.errors)
        };
        pairs.extend([
            ("Canary", format!("v{}", running.release)),
            ("Policy", policy_text(&running.policy)),
            ("Started", table::time(running.started_at)),
            ("Promoted at", table::time(running.promote_at)),
            (
                "Requests",
                format!(
                    "{} (judged from {})",
                    running.requests, running.min_requests
                ),
            ),
            ("Failed", failed),
            (
                "p99",
                running
                    .p99_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
            ),
        ]);
    } else {
        pairs.push(("Canary", "none running".to_owned()));
    }
    format!("=== {app} canary\n{}", table::render_pairs(&pairs))
}

/// `10m`, `90s`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("duration `{text}` must look like 90s, 10m or 1h");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// `1%`, `0.5%` (the `%` is optional) as basis points.
fn parse_percent(text: &str) -> anyhow::Result<u32> {
    let bad = || anyhow::anyhow!("error rate `{text}` must look like 1% or 0.5%");
    let number = text.trim().trim_end_matches('%');
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let hundredths: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<2}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(100)
        .and_then(|bp| bp.checked_add(hundredths))
        .ok_or_else(bad)
}

fn duration_text(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_parse_as_typed() {
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("10d").is_err());
        assert_eq!(parse_percent("1%").unwrap(), 100);
        assert_eq!(parse_percent("0.5%").unwrap(), 50);
        assert_eq!(parse_percent("2.25").unwrap(), 225);
        assert!(parse_percent("0.125%").is_err());
        assert!(parse_percent("x%").is_err());
    }

    #[test]
    fn policies_read_in_one_line() {
        let policy = CanaryPolicy {
            percent: 20,
            duration_secs: 600,
            max_error_basis_points: 50,
            max_p99_ms: Some(800),
            sticky: true,
        };
        assert_eq!(
            policy_text(&policy),
            "20% of requests for 10m, rolled back above 0.5% 5xx or a p99 over 800 ms, sticky per client"
        );
    }
}
