"""How close to the oracle can a model get on generated data? An upper bound on churn ROC AUC from observable data.

The oracle (features/synthetic/oracle.py) knows each customer's latent engagement state at the cutoff; no model
can. This script runs a forward filter (an HMM over the simulator's daily states) that has to infer the state
from what the data show before the cutoff: orders, web sessions, e-mail opens and unsubscribes, ticket openings,
survey answers. Subscribers get their true state (generous: their plan changes reveal it). Its churn probability is
sum over states of P(state | data) x P(no purchase in the horizon | state). Ranking by that posterior is the best
any model can do with the same information (Neyman-Pearson), so the filter's AUC bounds every model's.

Three modes, by what the filter is told about each customer's latent parameters:

* ``true`` (default): all of them (purchase rate, web rate, e-mail open probability, satisfaction, price
  sensitivity, ticket rate, dropout hazard ``h0``, return hazard). A loose bound: no data reveal them all.
* ``hazards``: all but the two hazards, which the filter integrates over with the simulator's priors (``h0`` ~
  Gamma(2), 5-point Gauss-Laguerre; return hazard 0 for non-returners, else Gamma(2), 5 points; 7 points give
  the same AUC to 4 decimals at 2026-08-03). A customer's
  hazards show in the data only through the state changes they cause (a lapse, a return), which the filter weighs
  exactly; so this is still an upper bound on any model of the observable data, and the tighter one.
* ``plugin``: the parameters estimated from each customer's own history and population means: a practical HMM,
  for comparison.

Usage: .venv/bin/python bench/observable_churn_bound.py DATA_DIR AS_OF [TRAINING_SNAPSHOTS] [true|hazards|plugin]
(for example ``data 2026-08-03 data/features/training_snapshots hazards`` after `make run`; ``hazards`` is the
slowest mode)
"""
import sys, datetime as dt, numpy as np, pandas as pd
from scipy.special import roots_genlaguerre
from sklearn.metrics import roc_auc_score
from features.synthetic.oracle import load_params, latent_state, no_purchase_probability
from features.synthetic.params import COUNTRIES, ENGAGED, DISENGAGING, DORMANT, dropout_hazard, price_shock_active, season
from features.snapshots import read_snapshots

data = sys.argv[1]; as_of = dt.date.fromisoformat(sys.argv[2]); H = 90
MODES = {"true": "filter with true parameters (loose bound)", "hazards": "filter integrating over the hazards (bound)",
         "plugin": "plug-in filter"}
mode = sys.argv[-1] if sys.argv[-1] in MODES else "true"
args = [a for a in sys.argv[1:] if a not in MODES]
snapshots = args[2] if len(args) > 2 else f"{data}/features/training_snapshots"
truth = f"{data}/raw/truth"
p = load_params(truth)
t = (as_of - p.start_date).days
state = latent_state(truth, as_of)  # customers joined before t, true state, open tickets, parameters
n = len(state); idx = pd.Series(np.arange(n), index=state["customer_id"])
D = t

def dense(frame, day_col, weight=None):
    a = np.zeros((n, D), np.int32)
    f = frame[frame["customer_id"].isin(idx.index) & (frame[day_col] < D) & (frame[day_col] >= 0)]
    np.add.at(a, (idx[f["customer_id"]].to_numpy(), f[day_col].to_numpy()), 1 if weight is None else f[weight].to_numpy())
    return a

def day_of(ts):
    return ((pd.to_datetime(ts) - pd.Timestamp(p.start_date)).dt.days).astype(int)

tx = pd.read_parquet(f"{data}/raw/transactions.parquet", columns=["customer_id", "ts", "amount"])
tx = tx[tx["amount"] >= 0]; tx["d"] = day_of(tx["ts"])
orders = dense(tx, "d")
web = pd.read_parquet(f"{data}/raw/web_sessions.parquet", columns=["customer_id", "ts"]); web["d"] = day_of(web["ts"])
webs = dense(web, "d")
sv = pd.read_parquet(f"{data}/raw/surveys.parquet", columns=["customer_id", "ts"]); sv["d"] = day_of(sv["ts"])
surveys = dense(sv, "d") > 0
em = pd.read_parquet(f"{data}/raw/email_events.parquet", columns=["customer_id", "event", "campaign_id"])
em["d"] = (pd.to_datetime(em["campaign_id"].str.replace("newsletter-", "")) - pd.Timestamp(p.start_date)).dt.days
sent = dense(em[em.event == "sent"], "d") > 0
opened = dense(em[em.event == "open"], "d") > 0
unsub = dense(em[em.event == "unsubscribe"], "d") > 0
tk = pd.read_parquet(f"{truth}/tickets.parquet")
tk = tk[tk["customer_id"].isin(idx.index)]
ci = idx[tk["customer_id"]].to_numpy(); o = tk["open_day"].to_numpy(); r = tk["resolve_day"].to_numpy()
def counts(start, stop):  # tickets counted on days start <= d < stop
    a = np.zeros((n, D + 2), np.int32)
    ok = start < D
    np.add.at(a, (ci[ok], np.minimum(start[ok], D + 1)), 1)
    np.add.at(a, (ci[ok], np.minimum(stop[ok], D + 1)), -1)
    return np.cumsum(a, axis=1)[:, :D]
n_start = counts(o + 1, r + 1)   # o < d <= r
n_after = counts(o + 1, r)       # o < d < r
ticket_open = dense(tk.rename(columns={"open_day": "d"}), "d") > 0

lam, wr, op = (state[c].to_numpy() for c in ("purchase_rate", "web_rate", "email_open_prob"))
h0, z, sens, mu, kappa = (state[c].to_numpy() for c in ("hazard_h0", "satisfaction", "price_sensitivity", "return_hazard", "ticket_rate"))
if mode == "plugin":
    days = np.arange(D)[None, :]
    bought = orders > 0
    first = np.where(bought.any(1), bought.argmax(1), 0)
    last = np.where(bought.any(1), D - 1 - bought[:, ::-1].argmax(1), 0)
    inwin = (days >= first[:, None]) & (days <= last[:, None])
    expo = (last - first + 1).astype(float)
    lam = (1.1 + (orders * inwin).sum(1) - 1) / (1.1 / 0.13 + expo)
    lam = np.maximum(lam, 1e-4)
    wr = (1.5 + (webs * inwin).sum(1)) / (1.5 / 0.09 + expo)
    a0, b0 = 2.0, 2 / 0.35 - 2
    op = (a0 + (opened & inwin).sum(1)) / (a0 + b0 + (sent & inwin).sum(1))
    h0 = np.full(n, p.hazard_mean); z = np.zeros(n); sens = np.full(n, 2 / 7)
    mu = np.full(n, p.returner_share * p.return_hazard_mean); kappa = np.full(n, p.ticket_rate_mean)
    state = state.assign(purchase_rate=lam, hazard_h0=h0, satisfaction=z, price_sensitivity=sens, return_hazard=mu, ticket_rate=kappa)
signup = state["signup_day"].to_numpy()
if mode == "hazards":  # latent types: (h0, return hazard) on quadrature grids of their priors
    def gamma_nodes(shape, mean, k=5):  # E f(X), X ~ Gamma(shape, mean / shape): sum w f(mean / shape x) / sum w
        x, w = roots_genlaguerre(k, shape - 1)
        return mean / shape * x, w / w.sum()
    h_nodes, h_w = gamma_nodes(p.hazard_shape, p.hazard_mean)
    x, w = gamma_nodes(2.0, p.return_hazard_mean)  # the simulator's returners: Gamma(2) around the mean
    m_nodes, m_w = np.concatenate([[0.0], x]), np.concatenate([[1 - p.returner_share], p.returner_share * w])
    H0, MU = np.meshgrid(h_nodes, m_nodes, indexing="ij")
    h0_t, mu_t = np.tile(H0.ravel(), (n, 1)), np.tile(MU.ravel(), (n, 1))
    prior = np.outer(h_w, m_w).ravel()
else:
    h0_t, mu_t, prior = h0[:, None], mu[:, None], np.ones(1)
T = len(prior)
country = pd.Categorical(state["country"], categories=COUNTRIES).codes
pf, wf, ef = np.array(p.purchase_factor), np.array(p.web_factor), np.array(p.email_factor)
uf = np.array([0.004, 0.016, 0.008])
gamma = p.disengaged_to_dormant
alpha = np.zeros((n, T, 3))  # P(type, state | data so far)
np.seterr(divide="ignore")  # log(0) = -inf: an observation impossible in that state
for d in range(D):
    s_d = season(p, np.array([d]))[0]
    k = orders[:, d][:, None]; w = webs[:, d][:, None]
    rate_o = lam[:, None] * s_d * pf[None, :]
    rate_w = wr[:, None] * wf[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.where(rate_o > 0, k * np.log(rate_o) - rate_o, np.where(k > 0, -np.inf, 0.0))
        ll += np.where(rate_w > 0, w * np.log(rate_w) - rate_w, np.where(w > 0, -np.inf, 0.0))
    alive = np.array([1.0, 1.0, 0.0])[None, :]
    ps = p.survey_rate * alive
    ll += np.log(np.where(surveys[:, d][:, None], ps, 1 - ps))
    can = (n_after[:, d] < p.max_open_tickets)[:, None]
    pk = np.where(can, kappa[:, None] * alive, 0.0)
    ll += np.where(can, np.log(np.where(ticket_open[:, d][:, None], pk, 1 - pk)), 0.0)
    s = sent[:, d][:, None]
    po = op[:, None] * ef[None, :]
    ll += np.where(s, np.log(np.where(opened[:, d][:, None], po, 1 - po)), 0.0)
    ll += np.where(s, np.log(np.where(unsub[:, d][:, None], uf[None, :], 1 - uf[None, :])), 0.0)
    post = alpha * np.exp(ll - np.nanmax(np.where(np.isfinite(ll), ll, -1e300), axis=1, keepdims=True))[:, None, :]
    tot = post.sum(axis=(1, 2), keepdims=True)
    alpha = np.where(tot > 0, post / np.where(tot > 0, tot, 1), alpha)
    alpha[signup == d] = np.outer(prior, [1.0, 0.0, 0.0])
    hz = dropout_hazard(p, h0_t, z[:, None], sens[:, None], price_shock_active(p, country, d)[:, None],
                        n_start[:, d][:, None])
    e, g, m = alpha[..., 0], alpha[..., 1], alpha[..., 2]
    alpha = np.stack([e * (1 - hz) + m * mu_t, e * hz + g * (1 - gamma), g * gamma + m * (1 - mu_t)], axis=-1)

subs = pd.read_parquet(f"{data}/raw/subscriptions.parquet", columns=["customer_id"])["customer_id"].unique()
is_sub = state["customer_id"].isin(subs).to_numpy()
true = np.eye(3)[state["state"].to_numpy()]
alpha[is_sub] = alpha[is_sub].sum(axis=2)[:, :, None] * true[is_sub][:, None, :]
p_no = np.zeros(n)
for k in range(T):
    for s in (ENGAGED, DISENGAGING, DORMANT):
        typed = state.assign(state=s, hazard_h0=h0_t[:, k], return_hazard=mu_t[:, k])
        p_no += alpha[:, k, s] * no_purchase_probability(typed, p, as_of, H)
oracle = no_purchase_probability(latent_state(truth, as_of), p, as_of, H)
snap = read_snapshots(snapshots)
snap = snap[(pd.to_datetime(snap["cutoff"]).dt.date == as_of) & (snap["is_active"] == True)]
y = snap["churned"].astype(int).to_numpy(); pos = idx[snap["customer_id"]].to_numpy()
name = MODES[mode]
print(f"active customers at {as_of}: {len(y)}; oracle AUC {roc_auc_score(y, oracle[pos]):.4f}; "
      f"{name} AUC {roc_auc_score(y, p_no[pos]):.4f}; non-subscribers only: filter "
      f"{roc_auc_score(y[~is_sub[pos]], p_no[pos][~is_sub[pos]]):.4f}, oracle "
      f"{roc_auc_score(y[~is_sub[pos]], oracle[pos][~is_sub[pos]]):.4f}")
print(f"mean filtered probability of the true state: {(alpha.sum(axis=1) * true).sum(axis=1)[pos].mean():.4f}")
