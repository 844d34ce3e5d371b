//! The network's two forward passes: values only, physical layers executed
//! by the devices or the twins; and the differentiable graph, which either
//! replays the measurements with the twins' Jacobians (PAT) or uses the
//! twins outright (in-silico).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Tensor, Var};
use hilt_core::Range;

use super::layer::Layer;
use super::network::Network;
use crate::array::{array2, tensor2};
use crate::error::{Error, Result};
use crate::rig::Rig;
use crate::twin::Twin;

/// What one physical layer measured, kept for the backward pass: PAT takes
/// the twin's Jacobian at the *applied* values and the loss sees `y`.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The layer's output (measured, or the twin's prediction).
    pub y: Tensor,
    /// The inputs the device applied (after its clamp and quantisation).
    pub applied_x: Tensor,
    /// The parameters the device applied.
    pub applied_theta: Tensor,
}

/// What executes physical layers in a values-only pass.
#[derive(Debug)]
pub enum Physics<'a> {
    /// The devices on the daemon (reality), each sample measured `repeats`
    /// times and averaged.
    Rigs(&'a mut HashMap<String, Rig>, u32),
    /// The twins (in-silico prediction of reality).
    Twins(&'a HashMap<String, Arc<Twin>>),
}

/// `softplus(20 z)/20`: the paper's smooth hinge for the range penalty.
fn soft_relu(z: &Tensor) -> Result<Tensor> {
    let k = 20.0;
    let kz = (z * k)?;
    let smooth = ((kz.abs()? * -1.0)?.exp()? + 1.0)?.log()?;
    Ok(((kz.relu()? + smooth)? / k)?)
}

/// Mean out-of-range excess of `v` in units of the range width.
fn range_penalty(v: &Tensor, r: Range) -> Result<Tensor> {
    let u = ((v - f64::from(r.min))? / f64::from(r.width().max(1e-12)))?;
    Ok((soft_relu(&u.neg()?)? + soft_relu(&(u - 1.0)?)?)?.mean_all()?)
}

fn twin_of<'t>(twins: &'t HashMap<String, Arc<Twin>>, device: &str) -> Result<&'t Twin> {
    twins
        .get(device)
        .map(|t| &**t)
        .ok_or_else(|| Error::invalid(format!("no twin for device '{device}'")))
}

impl Network {
    /// A digital layer; `graph` keeps the trainable parameters in the
    /// autograd graph.
    pub(crate) fn digital(layer: &Layer, h: &Tensor, graph: bool) -> Result<Tensor> {
        let t = |v: &Var| {
            if graph {
                v.as_tensor().clone()
            } else {
                v.as_tensor().detach()
            }
        };
        Ok(match layer {
            Layer::Rescale {
                a,
                b,
                mean,
                inv_std,
            } => h
                .broadcast_sub(mean.as_tensor())?
                .broadcast_mul(inv_std.as_tensor())?
                .broadcast_mul(&t(a))?
                .broadcast_add(&t(b))?,
            Layer::Linear { w, b } => h.matmul(&t(w).t()?)?.broadcast_add(&t(b))?,
            Layer::Sigmoid => candle_nn::ops::sigmoid(h)?,
            Layer::Normalize => {
                let a = h.abs()?;
                a.broadcast_div(&(a.max_keepdim(1)? + 1e-12)?)?
            }
            Layer::Tile { copies } if *copies > 1 => h.repeat((1, *copies))?,
            Layer::Tile { .. } | Layer::Physical { .. } | Layer::Goodness { .. } => h.clone(),
        })
    }

    /// Physical layer `i` executed by `physics` on inputs `x` with
    /// parameters `theta` (one row shared, or one per row), both clamped
    /// into the device's published ranges first.
    pub async fn measure(
        &self,
        i: usize,
        x: &Tensor,
        theta: &Tensor,
        physics: &mut Physics<'_>,
    ) -> Result<Measured> {
        let d = self.device_of(i)?;
        let (xr, pr) = (d.input_range, d.param_range);
        let xs = x.clamp(xr.min, xr.max)?;
        let ts = theta.clamp(pr.min, pr.max)?;
        Ok(match physics {
            Physics::Rigs(rigs, repeats) => {
                let rig = rigs
                    .get_mut(&d.id)
                    .ok_or_else(|| Error::invalid(format!("no lease on device '{}'", d.id)))?;
                let m = rig
                    .execute(&array2(&xs)?, &array2(&ts)?, (*repeats).max(1))
                    .await?;
                Measured {
                    y: tensor2(&m.y)?,
                    applied_x: tensor2(&m.applied_x)?,
                    applied_theta: tensor2(&m.applied_theta)?,
                }
            }
            Physics::Twins(twins) => Measured {
                y: twin_of(twins, &d.id)?.forward(&xs, &ts)?.detach(),
                applied_x: xs,
                applied_theta: ts,
            },
        })
    }

    /// Layer `i` alone, values only: a digital layer without a graph, a
    /// physical one executed by `physics` (its record returned with it).
    pub async fn forward_layer(
        &self,
        i: usize,
        h: &Tensor,
        physics: &mut Physics<'_>,
    ) -> Result<(Tensor, Option<Measured>)> {
        let layer = self
            .layers
            .get(i)
            .ok_or_else(|| Error::invalid(format!("the network has no layer {i}")))?;
        let Layer::Physical { theta, skip, .. } = layer else {
            return Ok((Self::digital(layer, h, false)?, None));
        };
        let rec = self
            .measure(i, h, &theta.as_tensor().detach(), physics)
            .await?;
        let out = if *skip {
            Tensor::cat(&[&rec.y, h], 1)?
        } else {
            rec.y.clone()
        };
        Ok((out, Some(rec)))
    }

    /// Values only, every layer in turn (see [`Network::forward_layer`]).
    /// Returns the output and each physical layer's record, in order.
    pub async fn forward_values(
        &self,
        x: &Tensor,
        mut physics: Physics<'_>,
    ) -> Result<(Tensor, Vec<Measured>)> {
        let mut h = x.clone();
        let mut records = Vec::new();
        for i in 0..self.layers.len() {
            let (next, rec) = self.forward_layer(i, &h, &mut physics).await?;
            h = next;
            records.extend(rec);
        }
        Ok((h, records))
    }

    /// The differentiable pass. With `measured` (PAT) each physical layer
    /// outputs exactly what was measured, while gradients flow through the
    /// twin evaluated at the applied values; without it (in-silico) the twin
    /// is the layer. Returns the output and the range penalty on every
    /// physical layer's inputs and θ.
    pub fn forward_graph(
        &self,
        x: &Tensor,
        twins: &HashMap<String, Arc<Twin>>,
        measured: Option<&[Measured]>,
    ) -> Result<(Tensor, Tensor)> {
        let mut g = Graph::new(self, twins, x)?;
        for i in 0..self.layers.len() {
            g.layer(i, measured)?;
        }
        Ok((g.h, g.penalty))
    }

    /// PAT's forward pass: every physical layer measured on its rig, and
    /// the graph of [`Network::forward_graph`] built as it goes, each
    /// layer's part while the next physical layer is being measured (the
    /// twins' work overlaps the rig's, which would otherwise wait for it).
    /// Returns the output, the range penalty and the measurements; the
    /// same values as `forward_values` then `forward_graph`.
    pub async fn forward_pat(
        &self,
        x: &Tensor,
        rigs: &mut HashMap<String, Rig>,
        repeats: u32,
        twins: &HashMap<String, Arc<Twin>>,
    ) -> Result<(Tensor, Tensor, Vec<Measured>)> {
        let mut physics = Physics::Rigs(rigs, repeats);
        let mut g = Graph::new(self, twins, x)?;
        let mut h = x.clone();
        let mut records: Vec<Measured> = Vec::new();
        // Layers before this one are in the graph.
        let mut built = 0;
        for i in 0..self.layers.len() {
            if !matches!(self.layers[i], Layer::Physical { .. }) {
                h = self.forward_layer(i, &h, &mut physics).await?.0;
                continue;
            }
            // The request goes out at the first poll; the graph of the
            // layers measured so far is built while the rig measures, once
            // the tasks that put the request on the wire (woken on this
            // thread, where only it runs them) have had their turn.
            let measuring = self.forward_layer(i, &h, &mut physics);
            let building = async {
                if built < i {
                    tokio::task::yield_now().await;
                }
                for j in built..i {
                    g.layer(j, Some(&records))?;
                }
                Ok::<(), Error>(())
            };
            let (measured, graph) = tokio::join!(measuring, building);
            graph?;
            built = i;
            let (next, rec) = measured?;
            h = next;
            records.extend(rec);
        }
        for j in built..self.layers.len() {
            g.layer(j, Some(&records))?;
        }
        Ok((g.h, g.penalty, records))
    }
}

/// The differentiable pass, one layer at a time.
struct Graph<'a> {
    net: &'a Network,
    twins: &'a HashMap<String, Arc<Twin>>,
    h: Tensor,
    penalty: Tensor,
    /// Physical layers built so far: the next one's measurement index.
    k: usize,
}

impl<'a> Graph<'a> {
    fn new(net: &'a Network, twins: &'a HashMap<String, Arc<Twin>>, x: &Tensor) -> Result<Self> {
        Ok(Graph {
            net,
            twins,
            h: x.clone(),
            penalty: Tensor::zeros((), candle_core::DType::F32, x.device())?,
            k: 0,
        })
    }

    /// Layer `i` onto the graph (see [`Network::forward_graph`]).
    fn layer(&mut self, i: usize, measured: Option<&[Measured]>) -> Result<()> {
        let layer = self
            .net
            .layers
            .get(i)
            .ok_or_else(|| Error::invalid(format!("the network has no layer {i}")))?;
        let Layer::Physical { theta, skip, .. } = layer else {
            self.h = Network::digital(layer, &self.h, true)?;
            return Ok(());
        };
        let h = &self.h;
        let d = self.net.device_of(i)?;
        let twin = twin_of(self.twins, &d.id)?;
        let th = theta.as_tensor();
        self.penalty = ((&self.penalty + range_penalty(h, d.input_range)?)?
            + range_penalty(th, d.param_range)?)?;
        let y = match measured {
            Some(m) => {
                let m = m
                    .get(self.k)
                    .ok_or_else(|| Error::invalid("fewer measurements than physical layers"))?;
                // Straight-through: value = applied, gradient = identity.
                let x_app = (h + (&m.applied_x - h)?.detach())?;
                let t_app = th.broadcast_add(&m.applied_theta.broadcast_sub(th)?.detach())?;
                let f = twin.forward(&x_app, &t_app)?;
                // Value = measured, gradient = twin's Jacobian.
                (&f + (&m.y - &f)?.detach())?
            }
            None => {
                let (xr, pr) = (d.input_range, d.param_range);
                twin.forward(&h.clamp(xr.min, xr.max)?, &th.clamp(pr.min, pr.max)?)?
            }
        };
        self.h = if *skip { Tensor::cat(&[&y, h], 1)? } else { y };
        self.k += 1;
        Ok(())
    }
}
