//! Which shaper channel carries which input or parameter.

use super::config::{Layout, ShgConfig};
use hilt_core::ControlEncoding;

/// Build the channel map and the number of trainable parameters.
pub(crate) fn channel_map(cfg: &ShgConfig) -> (ControlEncoding, usize) {
    let n = cfg.n_channels;
    let r = cfg.replicate;
    let n_x = cfg.n_in * r; // channels that carry inputs
    let mut input_index = vec![-1i32; n];
    let mut param_index = vec![-1i32; n];
    let idx = |v: usize| i32::try_from(v).expect("channel counts are at most 1024");
    match cfg.layout {
        Layout::Blocked => {
            for k in 0..n {
                if k < n_x {
                    input_index[k] = idx(k / r);
                } else {
                    param_index[k] = idx(k - n_x);
                }
            }
        }
        Layout::Interleaved => {
            // Bresenham spread: channel k carries an input when the running
            // share of input channels steps up, which alternates x/θ for an
            // even split and spaces them evenly otherwise.
            let (mut xi, mut pi) = (0, 0);
            for k in 0..n {
                if (k + 1) * n_x / n > k * n_x / n {
                    input_index[k] = idx(xi / r);
                    xi += 1;
                } else {
                    param_index[k] = idx(pi);
                    pi += 1;
                }
            }
        }
        Layout::Additive => {
            // Inputs replicated evenly over the whole band, θ on every channel.
            for k in 0..n {
                input_index[k] = idx(k * cfg.n_in / n);
                param_index[k] = idx(k);
            }
        }
    }
    let n_par = match cfg.layout {
        Layout::Additive => n,
        _ => n - n_x,
    };
    let map = ControlEncoding {
        layout: cfg.layout.as_str().to_string(),
        input_index,
        param_index,
        input_scale: if cfg.layout == Layout::Additive {
            cfg.input_scale
        } else {
            1.0
        },
        control_min: 0.0,
        control_max: 1.0,
    };
    (map, n_par)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(layout: Layout, n: usize, n_in: usize, r: usize) -> ShgConfig {
        ShgConfig {
            layout,
            n_channels: n,
            n_in,
            replicate: r,
            ..ShgConfig::default()
        }
    }

    /// Every input index 0..n_in appears exactly `replicate` times, every
    /// parameter index exactly once: no input or parameter is dropped.
    fn assert_complete(map: &ControlEncoding, n_in: usize, r: usize, n_par: usize) {
        for i in 0..n_in as i32 {
            let c = map.input_index.iter().filter(|&&v| v == i).count();
            assert_eq!(c, r, "input {i} on {c} channels");
        }
        let mut p: Vec<i32> = map
            .param_index
            .iter()
            .copied()
            .filter(|&v| v >= 0)
            .collect();
        p.sort_unstable();
        assert_eq!(p, (0..n_par as i32).collect::<Vec<_>>());
    }

    #[test]
    fn blocked_puts_inputs_first() {
        let (map, n_par) = channel_map(&cfg(Layout::Blocked, 8, 3, 2));
        assert_eq!(n_par, 2);
        assert_eq!(map.input_index, [0, 0, 1, 1, 2, 2, -1, -1]);
        assert_eq!(map.param_index, [-1, -1, -1, -1, -1, -1, 0, 1]);
    }

    #[test]
    fn interleaved_alternates_for_an_even_split() {
        let (map, n_par) = channel_map(&cfg(Layout::Interleaved, 8, 4, 1));
        assert_eq!(n_par, 4);
        assert_eq!(map.input_index, [-1, 0, -1, 1, -1, 2, -1, 3]);
        assert_complete(&map, 4, 1, 4);
        let (map, n_par) = channel_map(&cfg(Layout::Interleaved, 64, 12, 2));
        assert_eq!(n_par, 40);
        assert_complete(&map, 12, 2, 40);
    }

    #[test]
    fn additive_covers_every_channel_with_both() {
        let (map, n_par) = channel_map(&cfg(Layout::Additive, 64, 12, 1));
        assert_eq!(n_par, 64);
        assert!(map.input_index.iter().all(|&i| (0..12).contains(&i)));
        assert_eq!(map.param_index, (0..64).collect::<Vec<_>>());
    }
}
