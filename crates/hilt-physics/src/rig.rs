//! The rigs hilt knows, listed once: their names, their physics tables,
//! and how a table becomes a model. The daemon's config, its registry,
//! the firmware emulator and the drivers all go through this list, so a
//! new rig is added here and nowhere else.

use serde::Serialize;

use crate::circuit::{CircuitConfig, CircuitModel};
use crate::loopback::{LoopbackConfig, LoopbackModel};
use crate::plate::{PlateConfig, PlateModel};
use crate::shg::{ShgConfig, ShgModel};
use crate::{Error, PhysicalModel, RigKind, Variant};

impl RigKind {
    /// The physics table a device of this kind gets when its config gives
    /// none; a loopback has no sensible default widths.
    pub fn default_physics(self) -> Option<RigPhysics> {
        match self {
            RigKind::Shg => Some(RigPhysics::Shg(ShgConfig::default())),
            RigKind::Plate => Some(RigPhysics::Plate(PlateConfig::default())),
            RigKind::Circuit => Some(RigPhysics::Circuit(CircuitConfig::default())),
            RigKind::Loopback => None,
        }
    }

    /// This kind's physics table read from any serde form (a board's
    /// Configure text, as JSON).
    pub fn physics_from<'de, D: serde::Deserializer<'de>>(
        self,
        table: D,
    ) -> Result<RigPhysics, D::Error> {
        use serde::Deserialize;
        Ok(match self {
            RigKind::Shg => RigPhysics::Shg(ShgConfig::deserialize(table)?),
            RigKind::Plate => RigPhysics::Plate(PlateConfig::deserialize(table)?),
            RigKind::Circuit => RigPhysics::Circuit(CircuitConfig::deserialize(table)?),
            RigKind::Loopback => RigPhysics::Loopback(LoopbackConfig::deserialize(table)?),
        })
    }
}

/// A rig's physics table: which rig, configured how.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RigPhysics {
    /// `[device.shg]`
    Shg(ShgConfig),
    /// `[device.plate]`
    Plate(PlateConfig),
    /// `[device.circuit]`
    Circuit(CircuitConfig),
    /// `[device.loopback]`
    Loopback(LoopbackConfig),
}

/// A model of any rig, as the simulator driver runs it.
pub type RigModel = Box<dyn PhysicalModel>;

impl RigPhysics {
    /// Which rig this table describes.
    pub fn kind(&self) -> RigKind {
        match self {
            RigPhysics::Shg(_) => RigKind::Shg,
            RigPhysics::Plate(_) => RigKind::Plate,
            RigPhysics::Circuit(_) => RigKind::Circuit,
            RigPhysics::Loopback(_) => RigKind::Loopback,
        }
    }

    /// The model of this rig: `variant` decides whether mismatch, noise and
    /// drift are in it, `seed` fixes them. Errors name the table's field
    /// (`plate.q: …`).
    pub fn build_model(&self, variant: Variant, seed: u64) -> Result<RigModel, Error> {
        fn boxed<M: PhysicalModel>(m: Result<M, Error>, kind: RigKind) -> Result<RigModel, Error> {
            match m {
                Ok(m) => Ok(Box::new(m)),
                Err(e) => Err(e.within(kind.as_str())),
            }
        }
        let kind = self.kind();
        match self {
            RigPhysics::Shg(c) => boxed(ShgModel::new(c.clone(), variant, seed), kind),
            RigPhysics::Plate(c) => boxed(PlateModel::new(c.clone(), variant, seed), kind),
            RigPhysics::Circuit(c) => boxed(CircuitModel::new(c.clone(), variant, seed), kind),
            RigPhysics::Loopback(c) => boxed(LoopbackModel::new(c), kind),
        }
    }

    /// The table as JSON, every key present (what a board is configured
    /// with, and edits key by key).
    pub fn to_json(&self) -> serde_json::Value {
        // Physics tables are plain numbers, strings and lists, which
        // always have a JSON form.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rig_has_a_name_that_parses_back() {
        for k in RigKind::ALL {
            assert_eq!(k.as_str().parse::<RigKind>(), Ok(k));
        }
        let e = "laser".parse::<RigKind>().unwrap_err();
        assert!(e.contains("shg, plate, circuit, loopback"), "{e}");
    }

    #[test]
    fn every_rig_with_a_default_builds_a_model_of_its_kind() {
        for k in RigKind::ALL.into_iter().filter(|k| k.has_board()) {
            let m = k
                .default_physics()
                .unwrap()
                .build_model(Variant::True, 1)
                .unwrap();
            assert_eq!(m.kind(), k);
        }
        assert!(RigKind::Loopback.default_physics().is_none());
    }

    #[test]
    fn a_bad_table_names_rig_and_field() {
        let physics = RigPhysics::Loopback(LoopbackConfig { n_in: 0, n_par: 0 });
        let e = physics
            .build_model(Variant::Nominal, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("loopback.n_in: "), "{e}");
    }
}
