//! The table, its index and TTL, as `confab-proxy setup` makes them.

use super::*;

impl DynamoStore {
    /// Creates the table, its index and TTL if missing (idempotent), and waits
    /// until the table is active.
    pub async fn setup(&self) -> Result<()> {
        let attr = |name: &str| {
            build(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build(),
            )
        };
        let key_el = |name: &str, kind: KeyType| {
            build(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build(),
            )
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .key_schema(key_el("pk", KeyType::Hash)?)
            .key_schema(key_el("sk", KeyType::Range)?)
            .global_secondary_indexes(build(
                GlobalSecondaryIndex::builder()
                    .index_name(GSI)
                    .key_schema(key_el("gsi1pk", KeyType::Hash)?)
                    .key_schema(key_el("gsi1sk", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build(),
            )?)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created the table"),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                tracing::info!(table = %self.table, "the table exists")
            }
            Err(err) => return Err(classify(err)),
        }
        // Poll rather than use the SDK waiter (20 s minimum delay).
        for _ in 0..600 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(classify)?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ttl = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(build(
                TimeToLiveSpecification::builder()
                    .attribute_name("expiresAt")
                    .enabled(true)
                    .build(),
            )?)
            .send()
            .await;
        if let Err(err) = ttl {
            // Enabling TTL twice is refused; that is the idempotent case.
            let already = err
                .as_service_error()
                .and_then(|e| e.message())
                .is_some_and(|m| m.contains("already enabled"));
            if !already {
                return Err(classify(err));
            }
        }
        Ok(())
    }
}
