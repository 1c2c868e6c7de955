use super::{Evently, Work, record_notification};
use crate::model::{NewUser, NotificationKind, PushSubscription, User, check_user};
use crate::{Actor, Entity, Error, PushSubscriptionId, Result, StoreError, UserId};

impl Evently {
    /// Registers a user and queues a welcome notification. A taken e-mail is [`Error::Conflict`].
    pub async fn register_user(&self, new: NewUser) -> Result<User> {
        let user = User {
            id: UserId(self.inner.ids.uuid()),
            email: new.email.trim().to_lowercase(),
            name: new.name.trim().to_string(),
            password_hash: new.password_hash,
            role: new.role,
            attributes: new.attributes,
            created_at: self.now(),
        };
        check_user(&user)?;
        self.retrying("register_user", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            work.changes.new_users.push(user.clone());
            let welcome = self.notification(user.id, NotificationKind::Welcome, user.created_at);
            record_notification(&mut work, welcome, user.created_at);
            match work.commit().await {
                Err(StoreError::UniqueViolation { constraint })
                    if constraint.starts_with("users") =>
                {
                    return Err(Error::conflict(format!(
                        "e-mail {} is already registered",
                        user.email
                    )));
                }
                other => other?,
            }
            Ok(user.clone())
        })
        .await
    }

    /// A user by id. Users see themselves; admins see everyone.
    pub async fn user(&self, actor: &Actor, id: UserId) -> Result<User> {
        if actor.user_id != id && !actor.is_admin() {
            return Err(Error::forbidden("users may only read their own account"));
        }
        let mut tx = self.inner.store.begin_read().await?;
        tx.user(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::User, id))
    }

    /// A user by e-mail, for the edge's login flow (it checks the password hash).
    pub async fn user_by_email(&self, email: &str) -> Result<User> {
        let email = email.trim().to_lowercase();
        let mut tx = self.inner.store.begin_read().await?;
        tx.user_by_email(&email)
            .await?
            .ok_or_else(|| Error::not_found(Entity::User, email))
    }

    /// Adds or refreshes the actor's Web Push subscription (keyed by endpoint).
    pub async fn subscribe_push(
        &self,
        actor: &Actor,
        endpoint: String,
        p256dh: String,
        auth: String,
    ) -> Result<PushSubscription> {
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            || endpoint.len() > 2048
        {
            return Err(Error::validation(
                "endpoint",
                "must be an http(s) URL of at most 2048 bytes",
            ));
        }
        for (field, v) in [("p256dh", &p256dh), ("auth", &auth)] {
            if v.is_empty()
                || v.len() > 256
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
            {
                return Err(Error::validation(
                    field,
                    "must be base64url, 1 to 256 characters",
                ));
            }
        }
        let sub = PushSubscription {
            id: PushSubscriptionId(self.inner.ids.uuid()),
            user_id: actor.user_id,
            endpoint,
            p256dh,
            auth,
            created_at: self.now(),
        };
        self.retrying("subscribe_push", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            work.changes.push_subscriptions.push(sub.clone());
            work.commit().await?;
            Ok(sub.clone())
        })
        .await
    }

    /// Removes one of the actor's push subscriptions.
    pub async fn unsubscribe_push(&self, actor: &Actor, endpoint: &str) -> Result<()> {
        self.retrying("unsubscribe_push", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let mine = work
                .read()
                .await?
                .push_subscriptions_for_user(actor.user_id)
                .await?;
            if !mine.iter().any(|s| s.endpoint == endpoint) {
                return Err(Error::not_found(Entity::PushSubscription, endpoint));
            }
            work.changes
                .removed_push_subscriptions
                .push(endpoint.to_string());
            work.commit().await?;
            Ok(())
        })
        .await
    }

    /// The actor's notifications, newest first, as `query` narrows them (its limit is kept to 1 to
    /// 500).
    pub async fn notifications(
        &self,
        actor: &Actor,
        query: crate::NotificationQuery,
    ) -> Result<Vec<crate::Notification>> {
        let query = crate::NotificationQuery {
            limit: query.limit.clamp(1, 500),
            ..query
        };
        let mut tx = self.inner.store.begin_read().await?;
        Ok(tx.notifications_for_user(actor.user_id, &query).await?)
    }

    /// Marks one of the actor's notifications read and returns it. Marking it again keeps the first
    /// time; someone else's notification is [`Error::NotFound`].
    pub async fn mark_notification_read(
        &self,
        actor: &Actor,
        id: crate::NotificationId,
    ) -> Result<crate::Notification> {
        self.retrying("mark_notification_read", || async {
            let mut work = Work::begin(&*self.inner.store).await?;
            let mut n = work
                .read()
                .await?
                .notification(id)
                .await?
                .filter(|n| n.user_id == actor.user_id)
                .ok_or_else(|| Error::not_found(Entity::Notification, id))?;
            if n.read_at.is_none() {
                let now = self.now();
                work.changes.notifications_read.push((id, now));
                work.commit().await?;
                n.read_at = Some(now);
            }
            Ok(n)
        })
        .await
    }
}
