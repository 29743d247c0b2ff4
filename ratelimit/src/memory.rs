//! limitador's in-memory counters behind its async storage trait, so the unit tests run the
//! service's very code path (the async limiter) without Redis.

use async_trait::async_trait;
use limitador::counter::Counter;
use limitador::limit::Limit;
use limitador::storage::in_memory::InMemoryStorage;
use limitador::storage::{AsyncCounterStorage, Authorization, CounterStorage, StorageErr};
use std::collections::HashSet;

pub struct Memory(InMemoryStorage);

impl Memory {
    /// limitador's in-memory storage wants its counters of limits without variables made
    /// up front (its synchronous limiter does that in `add_limit`).
    pub fn new(limits: &[Limit]) -> Memory {
        let storage = InMemoryStorage::new(10_000);
        for limit in limits {
            storage.add_counter(limit).unwrap();
        }
        Memory(storage)
    }
}

#[async_trait]
impl AsyncCounterStorage for Memory {
    async fn is_within_limits(&self, counter: &Counter, delta: i64) -> Result<bool, StorageErr> {
        self.0.is_within_limits(counter, delta)
    }
    async fn update_counter(&self, counter: &Counter, delta: i64) -> Result<(), StorageErr> {
        self.0.update_counter(counter, delta)
    }
    async fn check_and_update<'a>(
        &self,
        counters: &mut Vec<Counter>,
        delta: i64,
        load_counters: bool,
    ) -> Result<Authorization, StorageErr> {
        self.0.check_and_update(counters, delta, load_counters)
    }
    async fn get_counters(&self, limits: HashSet<Limit>) -> Result<HashSet<Counter>, StorageErr> {
        self.0.get_counters(&limits)
    }
    async fn delete_counters(&self, limits: HashSet<Limit>) -> Result<(), StorageErr> {
        self.0.delete_counters(limits)
    }
    async fn clear(&self) -> Result<(), StorageErr> {
        self.0.clear()
    }
}

/// A storage that fails every call (as Redis does when it is gone), or never answers.
pub struct Broken {
    pub hang: bool,
}

impl Broken {
    async fn fail<T>(&self) -> Result<T, StorageErr> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Err(redis::RedisError::from((redis::ErrorKind::IoError, "connection refused")).into())
    }
}

#[async_trait]
impl AsyncCounterStorage for Broken {
    async fn is_within_limits(&self, _: &Counter, _: i64) -> Result<bool, StorageErr> {
        self.fail().await
    }
    async fn update_counter(&self, _: &Counter, _: i64) -> Result<(), StorageErr> {
        self.fail().await
    }
    async fn check_and_update<'a>(
        &self,
        _: &mut Vec<Counter>,
        _: i64,
        _: bool,
    ) -> Result<Authorization, StorageErr> {
        self.fail().await
    }
    async fn get_counters(&self, _: HashSet<Limit>) -> Result<HashSet<Counter>, StorageErr> {
        self.fail().await
    }
    async fn delete_counters(&self, _: HashSet<Limit>) -> Result<(), StorageErr> {
        self.fail().await
    }
    async fn clear(&self) -> Result<(), StorageErr> {
        self.fail().await
    }
}
