//! The names of the rigs hilt knows. `rig.rs` gives each its physics
//! table and model; this file is only the list, so the models themselves
//! can say which rig they are without depending on every other rig.

use std::str::FromStr;

use serde::Serialize;

/// Which rig a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RigKind {
    /// Second-harmonic generation: pulse shaper + spectrometer.
    Shg,
    /// Speaker-driven oscillating plate + microphone.
    Plate,
    /// Analog transistor circuit: waveform generator + scope.
    Circuit,
    /// No physics: outputs = inputs, for client tests and overhead
    /// measurements.
    Loopback,
}

impl RigKind {
    /// Every rig, in the order documentation lists them.
    pub const ALL: [RigKind; 4] = [
        RigKind::Shg,
        RigKind::Plate,
        RigKind::Circuit,
        RigKind::Loopback,
    ];

    /// The name configs, specs and the wire protocol use.
    pub fn as_str(self) -> &'static str {
        match self {
            RigKind::Shg => "shg",
            RigKind::Plate => "plate",
            RigKind::Circuit => "circuit",
            RigKind::Loopback => "loopback",
        }
    }

    /// Whether a real rig of this kind exists behind an interface board
    /// (a loopback is the simulator's alone).
    pub fn has_board(self) -> bool {
        self != RigKind::Loopback
    }

    /// Whether the drive itself heats the rig (the plate's voice coil,
    /// the circuit's transistors), so a drive-energy interlock applies.
    /// The SHG's input is a pulse shaper's mask, not power into the rig.
    pub fn heats_with_drive(self) -> bool {
        matches!(self, RigKind::Plate | RigKind::Circuit)
    }
}

impl std::fmt::Display for RigKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RigKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RigKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = RigKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown rig '{s}' (known: {})", known.join(", "))
            })
    }
}
