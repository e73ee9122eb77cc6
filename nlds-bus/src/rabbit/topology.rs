//! The RabbitMQ topology (the module documentation of [`super`] lists it), declared by code at
//! startup, and the names and message properties it fixes.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use nlds_core::Role;
use nlds_core::routing::EXCHANGE;

use crate::{BusError, RetryPolicy};

const DLX: &str = "nlds.dlx";
pub(super) const DELAY: &str = "nlds.delay";
pub(super) const REPLY_TO: &str = "amq.rabbitmq.reply-to";
pub(super) const ATTEMPT_HEADER: &str = "x-nlds-attempt";

pub(crate) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

pub(super) fn retry_exchange(delay: Duration) -> String {
    format!("nlds.retry.{}", delay.as_millis())
}

/// Persistent JSON with the delivery attempt in a header.
pub(super) fn message_properties(attempt: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(attempt as i64),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers)
}

/// Declares the whole topology on `ch`. Safe to call repeatedly and from every process.
pub async fn declare_topology(ch: &Channel, retry: &RetryPolicy) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    ch.exchange_declare(
        DLX.into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    ch.exchange_declare(
        super::changes::CHANGES.into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    for role in Role::ALL.iter().copied() {
        let queue = role.queue();
        let dead = format!("{queue}.dead");
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DLX.into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead.as_str().into()),
        );
        ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(unavailable)?;
        for pattern in role.bindings() {
            ch.queue_bind(
                queue.as_str().into(),
                EXCHANGE.into(),
                (*pattern).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        }
        ch.queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        ch.queue_bind(
            dead.as_str().into(),
            DLX.into(),
            dead.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    }
    {
        ch.exchange_declare(
            DELAY.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(EXCHANGE.into()),
        );
        ch.queue_declare(DELAY.into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(unavailable)?;
        ch.queue_bind(
            DELAY.into(),
            DELAY.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    }
    for delay in &retry.delays {
        let name = retry_exchange(*delay);
        ch.exchange_declare(
            name.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(EXCHANGE.into()),
        );
        ch.queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(unavailable)?;
        ch.queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}
