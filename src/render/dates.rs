//! Dates as the site shows them: one pattern, with month names in the site's `language`.
//!
//! The build formats post dates and reply times here, and hands the same pattern and month
//! names to the page script (`interactions.js`), so a reply drawn in the browser reads like
//! one drawn by the build ("11 February 2025, 10:00 UTC", never "2/11/2025, 10:00:00 AM").

use chrono::{DateTime, Locale, NaiveDate, TimeZone};
use serde_json::{json, Value};

/// Post and page dates.
pub const DATE_FORMAT: &str = "%-d %B %Y";
/// Reply times, always in UTC: a static page cannot know the reader's zone without script.
pub const TIME_FORMAT: &str = "%-d %B %Y, %H:%M UTC";

/// The chrono locale for a site language such as `en`, `fr`, `de-CH` or `pt_BR`; English
/// names when none matches.
pub fn locale(language: &str) -> Locale {
    let tag = language.trim().replace('-', "_");
    let (lang, region) = tag.split_once('_').unwrap_or((&tag, ""));
    let lang = lang.to_ascii_lowercase();
    let candidates = [
        format!("{lang}_{}", region.to_ascii_uppercase()),
        format!("{lang}_{}", lang.to_ascii_uppercase()),
    ];
    candidates
        .iter()
        .find_map(|name| Locale::try_from(name.as_str()).ok())
        .unwrap_or(Locale::POSIX)
}

pub fn format<Tz: TimeZone>(date: &DateTime<Tz>, pattern: &str, locale: Locale) -> String
where
    Tz::Offset: std::fmt::Display,
{
    date.format_localized(pattern, locale).to_string()
}

/// What the page script needs to format like the build: the reply time pattern and the
/// twelve month names as `%B` prints them.
pub fn script_view(locale: Locale) -> Value {
    let months: Vec<String> = (1..=12)
        .filter_map(|m| NaiveDate::from_ymd_opt(2000, m, 1))
        .map(|d| d.format_localized("%B", locale).to_string())
        .collect();
    json!({ "time_format": TIME_FORMAT, "months": months })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn languages_pick_month_names() {
        let date = Utc.with_ymd_and_hms(2025, 2, 11, 10, 0, 0).unwrap();
        assert_eq!(
            format(&date, TIME_FORMAT, locale("en")),
            "11 February 2025, 10:00 UTC"
        );
        assert_eq!(format(&date, DATE_FORMAT, locale("fr")), "11 février 2025");
        assert_eq!(
            format(&date, DATE_FORMAT, locale("de-CH")),
            "11 Februar 2025"
        );
        assert_eq!(format(&date, DATE_FORMAT, locale("xx")), "11 February 2025");
        let view = script_view(locale("fr"));
        assert_eq!(view["months"][1], "février");
        assert_eq!(view["months"].as_array().map(Vec::len), Some(12));
    }
}
