//! Users' servers (JupyterHub's spawner rows): their status from the start of a spawn, which also
//! writes the server's token and OAuth clients, to the stop.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::rows::{BeginSpawn, ServerRow, SpawnBegun, SERVER_COLUMNS};
use super::ServerStatus;
use super::{placeholders, DbError, Result, Store};
use crate::clock::Micros;

const STOPPED: &str = ServerStatus::Stopped.as_str();
const SPAWNING: &str = ServerStatus::Spawning.as_str();

impl Store {
    /// One server of a user.
    pub async fn server(&self, user_id: i64, name: &str) -> Result<Option<ServerRow>> {
        Ok(sqlx::query_as::<_, ServerRow>(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_id = $1 AND name = $2"
        ))
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Servers of each user id.
    pub async fn servers_of(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<ServerRow>>> {
        let mut conn = self.pool.acquire().await?;
        Self::servers_of_on(&mut conn, user_ids).await
    }

    pub(super) async fn servers_of_on(
        conn: &mut AnyConnection,
        user_ids: &[i64],
    ) -> Result<BTreeMap<i64, Vec<ServerRow>>> {
        let mut out: BTreeMap<i64, Vec<ServerRow>> = BTreeMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_id IN ({}) ORDER BY name",
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query_as::<_, ServerRow>(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.entry(row.user_id).or_default().push(row);
        }
        Ok(out)
    }

    /// Every server that is not stopped, with its owner's name.
    pub async fn active_servers(&self) -> Result<Vec<(String, ServerRow)>> {
        let rows = sqlx::query(&format!(
            "SELECT u.name AS owner, {} FROM servers s JOIN users u ON u.id = s.user_id WHERE s.status <> '{STOPPED}'",
            SERVER_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let owner: String = row.try_get("owner")?;
            out.push((owner, <ServerRow as sqlx::FromRow<AnyRow>>::from_row(&row)?));
        }
        Ok(out)
    }

    /// Number of servers of a user other than the default one.
    pub async fn count_named_servers(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM servers WHERE user_id = $1 AND name <> ''",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks a server as spawning, creating its row if needed, together with its API token and
    /// OAuth client, in one transaction. Returns the server row's id.
    pub async fn begin_spawn(&self, spawn: &BeginSpawn<'_>) -> Result<SpawnBegun> {
        let mut tx = self.write_tx().await?;
        let existing =
            sqlx::query_scalar::<_, i64>("SELECT id FROM servers WHERE user_id = $1 AND name = $2")
                .bind(spawn.user_id)
                .bind(spawn.server_name)
                .fetch_optional(&mut *tx)
                .await?;
        let server_id = match existing {
            Some(id) => {
                let changed = sqlx::query(&format!(
                    "UPDATE servers SET status = '{SPAWNING}', url = NULL, state = NULL, user_options = $1, \
                     started = $2, last_activity = $2 WHERE id = $3 AND status = '{STOPPED}'",
                ))
                .bind(spawn.user_options)
                .bind(spawn.now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Err(DbError::Conflict);
                }
                id
            }
            None => {
                sqlx::query_scalar::<_, i64>(&format!(
                "INSERT INTO servers (user_id, name, status, user_options, started, last_activity) \
                 VALUES ($1, $2, '{SPAWNING}', $3, $4, $4) RETURNING id",
            ))
                .bind(spawn.user_id)
                .bind(spawn.server_name)
                .bind(spawn.user_options)
                .bind(spawn.now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        sqlx::query("DELETE FROM api_tokens WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_tokens (hashed, kind, user_id, server_id, scopes, note, created) \
             VALUES ($1, 'server', $2, $3, $4, $5, $6)",
        )
        .bind(spawn.token_hash)
        .bind(spawn.user_id)
        .bind(server_id)
        .bind(serde_json::to_string(spawn.token_scopes)?)
        .bind("Server token")
        .bind(spawn.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let clients = std::iter::once((spawn.client_id, spawn.redirect_uri)).chain(
            spawn
                .node_clients
                .iter()
                .map(|(id, uri)| (id.as_str(), uri.as_str())),
        );
        for (client_id, redirect_uri) in clients {
            sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_clients (identifier, description, secret_hash, redirect_uri, server_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client_id)
            .bind(spawn.client_description)
            .bind(spawn.token_hash)
            .bind(redirect_uri)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        let admission = match &spawn.reserve {
            Some(reserve) => {
                match super::reservations::reserve_in(
                    self.engine,
                    &mut tx,
                    server_id,
                    spawn.user_id,
                    reserve,
                    spawn.now,
                )
                .await?
                {
                    Ok(admission) => Some(admission),
                    Err(refusal) => return Ok(SpawnBegun::Refused(refusal)),
                }
            }
            None => None,
        };
        tx.commit().await?;
        Ok(SpawnBegun::Begun {
            server_id,
            admission,
        })
    }

    /// Saves what the backend reported after launching.
    pub async fn set_server_launched(
        &self,
        id: i64,
        url: &str,
        state: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query("UPDATE servers SET url = $1, state = $2 WHERE id = $3")
            .bind(url)
            .bind(state.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a server's status.
    pub async fn set_server_status(&self, id: i64, status: ServerStatus) -> Result<()> {
        sqlx::query("UPDATE servers SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a server stopped and removes its token and OAuth client, in one transaction.
    pub async fn finish_stop(&self, id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("UPDATE servers SET status = '{STOPPED}', url = NULL, state = NULL, started = NULL WHERE id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_tokens WHERE server_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE server_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a (stopped) server row for good.
    pub async fn delete_server(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Raises a server's last activity.
    pub async fn touch_server(&self, id: i64, t: Micros) -> Result<()> {
        sqlx::query(
            "UPDATE servers SET last_activity = $1 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
        )
        .bind(t)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
