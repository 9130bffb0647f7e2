//! `windows:` of an environment: what a valid one reads as, and every problem as the
//! whole rendered diagnostic a user sees (the style of `diagnostics.rs`).

use ferry_config::{WeekTime, parse};

#[track_caller]
fn check(yaml: &str, expected: &str) {
    let yaml = yaml.strip_prefix('\n').unwrap_or(yaml);
    let actual = match parse(yaml, "ferry.yml") {
        Ok(_) => String::new(),
        Err(diags) => {
            let mut lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            lines.push(String::new());
            lines.join("\n")
        }
    };
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    assert_eq!(
        actual, expected,
        "\n--- actual ---\n{actual}--- expected ---\n{expected}"
    );
}

#[test]
fn a_valid_window_reads_zone_allow_and_deny() {
    let p = parse(
        r#"
pipeline: shop
environments:
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    windows:
      timezone: europe/berlin
      allow:
        - Mon-Fri 08:00-18:00
      deny:
        - { from: "Fri 15:00", to: "Mon 08:00" }
        - Wed 12:00 - Wed 13:00
"#,
        "ferry.yml",
    )
    .expect("valid");
    let w = p.environments[0].windows.as_ref().expect("windows");
    assert_eq!(w.timezone, "Europe/Berlin", "the zone's own spelling");
    assert_eq!(w.allow.len(), 5);
    assert_eq!(w.deny.len(), 2);
    assert_eq!(w.deny[0].from, WeekTime(4 * 1440 + 15 * 60));
    assert_eq!(w.deny[0].to, WeekTime(8 * 60));
    assert_eq!(w.deny[1].label, "Wed 12:00 - Wed 13:00");
}

#[test]
fn the_zone_defaults_to_utc() {
    let p = parse(
        "pipeline: shop\nenvironments:\n  - name: production\n    deploy: {command: {run: ./deploy.sh}}\n    windows:\n      deny: [\"Sat,Sun 00:00-24:00\"]\n",
        "ferry.yml",
    )
    .expect("valid");
    let w = p.environments[0].windows.as_ref().expect("windows");
    assert_eq!(w.timezone, "UTC");
    assert!(p.environments[0].windows.is_some());
}

#[test]
fn every_problem_of_a_window_is_reported_with_its_fix() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    windows:
      timezone: Europe/Berlni
      allow:
        - Mon-Fry 08:00-18:00
        - 42
      deny:
        - { from: "Fri 15:00", to: "Fri 15:00" }
        - { from: "Fri 15:00" }
        - { form: "Fri 15:00", to: "Mon 08:00" }
        - Fri 15:00 - Mon 25:00
      timezon: UTC
"#,
        r#"
ferry.yml:6:17: unknown time zone `Europe/Berlni` in `windows` of environment `production`
  help: did you mean `Europe/Berlin`? write an IANA time zone name
ferry.yml:8:11: invalid range in `allow` of `windows` of environment `production`: `Fry` is not a day of the week
  help: did you mean `Fri`? days are written Mon, Tue, Wed, Thu, Fri, Sat, Sun
ferry.yml:9:11: invalid range in `allow` of `windows` of environment `production`: `42` is not a range
  help: write a range like `Mon-Fri 08:00-18:00`, `Fri 15:00 - Mon 08:00` or `{ from: "Fri 15:00", to: "Mon 08:00" }` (days Mon..Sun, 24-hour times)
ferry.yml:11:11: invalid range in `deny` of `windows` of environment `production`: the range from `Fri 15:00` to `Fri 15:00` is empty: it ends when it starts
  help: write a range like `Mon-Fri 08:00-18:00`, `Fri 15:00 - Mon 08:00` or `{ from: "Fri 15:00", to: "Mon 08:00" }` (days Mon..Sun, 24-hour times)
ferry.yml:12:11: missing key `to` in `deny` of `windows` of environment `production`
  help: add `to: "Mon 08:00"`
ferry.yml:13:13: unknown key `form` in `deny` of `windows` of environment `production`
  help: did you mean `from`?
ferry.yml:14:11: invalid range in `deny` of `windows` of environment `production`: `25:00` is not a time of day (00:00 to 23:59)
  help: write a range like `Mon-Fri 08:00-18:00`, `Fri 15:00 - Mon 08:00` or `{ from: "Fri 15:00", to: "Mon 08:00" }` (days Mon..Sun, 24-hour times)
ferry.yml:15:7: unknown key `timezon` in `windows` of environment `production`
  help: did you mean `timezone`?
"#,
    );
}

#[test]
fn a_window_that_never_opens_is_refused() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    windows:
      allow: [Mon-Fri 08:00-18:00]
      deny: ["Mon-Fri 00:00-24:00"]
"#,
        r#"
ferry.yml:5:5: the `windows` of environment `production` never open: `deny` covers every time `allow` leaves
  help: shorten a `deny` range or widen `allow`; to stop deployments for a while, use `ferry freeze` instead
"#,
    );
}

#[test]
fn wrong_shapes_say_what_to_write() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    deploy: {command: {run: ./deploy.sh}}
    windows:
      timezone: 5
      deny: Fri
  - name: other
    deploy: {command: {run: ./deploy.sh}}
    windows: Fri
"#,
        r#"
ferry.yml:6:17: unknown time zone `5` in `windows` of environment `production`
  help: write an IANA time zone name like `Europe/Berlin`, `America/New_York` or `UTC`
ferry.yml:7:13: `deny` in `windows` of environment `production` must be a list, found the text `Fri`
  help: write one item per line, each starting with `- `
ferry.yml:10:14: `windows` of environment `other` must be a mapping, found the text `Fri`
  help: write `key: value` lines indented under it; allowed keys: timezone, allow, deny
"#,
    );
}
