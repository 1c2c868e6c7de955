//! Domain records: plain data, with state transitions as methods that return `Result`.

mod booking;
mod event;
mod misc;
mod user;
mod waitlist;

pub use booking::{Booking, BookingSource, BookingStatus};
pub use event::{Availability, Event, EventFilter, EventPatch, NewEvent};
pub use misc::{
    Job, JobPayload, JobStatus, NewJob, Notification, NotificationKind, PushSubscription, Ticket,
};
pub(crate) use user::check_user;
pub use user::{Actor, NewUser, Role, User};
pub use waitlist::{WaitlistEntry, WaitlistStatus};
