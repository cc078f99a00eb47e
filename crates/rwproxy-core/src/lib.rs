//! rwproxy-core owns the domain of rwproxy with no networking: what a node knows about the
//! cluster ([`NodeState`]), replication positions and the client's consistency token
//! ([`Token`]), MySQL and MariaDB GTID sets ([`GtidSet`]), how a request is classified
//! ([`Classifier`]), the pure routing decision ([`decide`]) and the codes rwproxy answers with
//! when it answers itself ([`ErrorCode`]).

pub mod class;
pub mod demand;
pub mod error;
pub mod gtid;
pub mod manager;
pub mod route;
pub mod state;
pub mod timeline;
pub mod token;

pub use class::{Classifier, ClassifierError, RequestClass};
pub use demand::{Demand, DemandGuard};
pub use error::ErrorCode;
pub use gtid::GtidSet;
pub use manager::{Disagreement, ManagedMember, ManagerView};
pub use route::{
    decide, Reason, Route, RouteInput, RoutePolicy, StalePolicy, TimeoutPolicy, WaitState,
    WriteMode,
};
pub use state::{NodeState, Positions, Reading, Role};
pub use timeline::{History, TimelineMark, Verdict};
pub use token::Token;
