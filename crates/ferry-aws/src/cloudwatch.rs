//! Alarms on CloudWatch (seed §3.3.1): the states of an environment's alarms, by name
//! and by name prefix (`DescribeAlarms`), and ferry's custom metrics (`PutMetricData`,
//! seed §9.2). `aws-sdk-cloudwatch` is pinned to `=1.99.0`, the last release speaking
//! the Query protocol (moto does not speak the newer RPC v2 CBOR one).

use crate::Aws;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StateValue};
use ferry_core::alarm::AlarmState;
use ferry_engine::ports::{PortError, PortResult};

/// One alarm as CloudWatch reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStatus {
    pub name: String,
    pub state: AlarmState,
    pub reason: String,
    /// Whether it is a composite alarm.
    pub composite: bool,
    /// When its state last changed (milliseconds since the epoch).
    pub updated_ms: Option<i64>,
}

/// CloudWatch alarms and metrics of one account and region.
pub struct CloudWatch {
    aws: Aws,
    client: Client,
}

fn state_of(v: Option<&StateValue>) -> AlarmState {
    match v {
        Some(StateValue::Alarm) => AlarmState::Alarm,
        Some(StateValue::Ok) => AlarmState::Ok,
        _ => AlarmState::InsufficientData,
    }
}

impl CloudWatch {
    pub fn new(aws: &Aws) -> CloudWatch {
        CloudWatch {
            aws: aws.clone(),
            client: Client::new(aws.config()),
        }
    }

    /// The alarms named `names` plus those whose name starts with `prefix` (metric and
    /// composite), sorted by name, each once. Names that do not exist are left out.
    pub fn alarms(&self, names: &[String], prefix: Option<&str>) -> PortResult<Vec<AlarmStatus>> {
        let mut out: Vec<AlarmStatus> = Vec::new();
        let mut queries = Vec::new();
        // DescribeAlarms takes at most 100 names per call.
        for chunk in names.chunks(100) {
            queries.push((Some(chunk.to_vec()), None));
        }
        if let Some(p) = prefix {
            queries.push((None, Some(p.to_string())));
        }
        for (names, prefix) in queries {
            let mut token: Option<String> = None;
            loop {
                let req = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(names.clone())
                    .set_alarm_name_prefix(prefix.clone())
                    .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
                    .alarm_types(aws_sdk_cloudwatch::types::AlarmType::CompositeAlarm)
                    .set_next_token(token.take());
                let page = self
                    .aws
                    .block_on(req.send())
                    .map_err(|e| self.aws.error("CloudWatch", "DescribeAlarms", &e))?;
                for a in page.metric_alarms() {
                    out.push(AlarmStatus {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: state_of(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                        composite: false,
                        updated_ms: a.state_updated_timestamp().and_then(|t| t.to_millis().ok()),
                    });
                }
                for a in page.composite_alarms() {
                    out.push(AlarmStatus {
                        name: a.alarm_name().unwrap_or_default().to_string(),
                        state: state_of(a.state_value()),
                        reason: a.state_reason().unwrap_or_default().to_string(),
                        composite: true,
                        updated_ms: a.state_updated_timestamp().and_then(|t| t.to_millis().ok()),
                    });
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    /// Sets the state of the alarm `name`, creating it first (a metric alarm on
    /// `Ferry/name`) when it does not exist: for tests and a first try against an
    /// empty account (in production the monitoring stack of `ferry synth aws` creates
    /// the alarms and CloudWatch sets their states).
    pub fn set_alarm(&self, name: &str, state: AlarmState, reason: &str) -> PortResult<()> {
        if self.alarms(&[name.to_string()], None)?.is_empty() {
            let req = self
                .client
                .put_metric_alarm()
                .alarm_name(name)
                .namespace("Ferry")
                .metric_name(name)
                .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
                .period(60)
                .evaluation_periods(1)
                .threshold(0.0)
                .comparison_operator(
                    aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
                );
            self.aws
                .block_on(req.send())
                .map_err(|e| self.aws.error("CloudWatch", "PutMetricAlarm", &e))?;
        }
        let value = match state {
            AlarmState::Alarm => StateValue::Alarm,
            AlarmState::Ok => StateValue::Ok,
            AlarmState::InsufficientData => StateValue::InsufficientData,
        };
        let req = self
            .client
            .set_alarm_state()
            .alarm_name(name)
            .state_value(value)
            .state_reason(reason);
        self.aws
            .block_on(req.send())
            .map_err(|e| self.aws.error("CloudWatch", "SetAlarmState", &e))?;
        Ok(())
    }

    /// Publishes one datapoint of a custom metric (seed §9.2: `DeploymentDuration`,
    /// `RollbackCount`, …) under `namespace`, with `dimensions` such as
    /// `("Environment", "production")`.
    pub fn put_metric(
        &self,
        namespace: &str,
        name: &str,
        value: f64,
        unit: StandardUnit,
        dimensions: &[(&str, &str)],
    ) -> PortResult<()> {
        if !value.is_finite() {
            return Err(PortError::permanent(format!(
                "metric {namespace}/{name}: {value} is not a number CloudWatch accepts"
            )));
        }
        let mut datum = MetricDatum::builder()
            .metric_name(name)
            .value(value)
            .unit(unit);
        for (k, v) in dimensions {
            datum = datum.dimensions(Dimension::builder().name(*k).value(*v).build());
        }
        let req = self
            .client
            .put_metric_data()
            .namespace(namespace)
            .metric_data(datum.build());
        self.aws
            .block_on(req.send())
            .map_err(|e| self.aws.error("CloudWatch", "PutMetricData", &e))?;
        Ok(())
    }
}
