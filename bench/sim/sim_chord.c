/*
 * bench/sim_chord.c - the synthetic-overlay benchmark: N Chord-RELOAD vnodes in
 * the deterministic simulator (bench/sim.h), every message through the real
 * codec.  Scenarios, in order: bootstrap N nodes one by one; steady state;
 * store K ViPR registrations and fetch them all; churn; a mass failure of 20%
 * followed by data survival checks.  Each figure is one line:
 *
 *   name value unit (baseline value unit, ratio x)
 *
 * The baseline for hops is the Chord paper's mean path length, ½·log2(N).
 *
 * Bootstrap: a node is spawned every -g ms (default 50) and joins through a
 * random member that has been in the ring for at least 60 s (the longest-
 * standing one while the overlay is younger).  A join takes about half a
 * second, so with a gap of a few ms (-g 5 for N = 100,000) joins run in
 * parallel batches, each the full protocol (Attach, Update, Join, handoff)
 * through an established member; only the pace differs.
 *
 *   sim_chord [-n nodes] [-s seed] [-k registrations] [-c churn %/min] [-m churn minutes]
 *             [-u update-interval s] [-p ping-interval s] [-l lookups] [-g join gap ms] [-v]
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu-qsbr.h>

#include "bench/sim/sim.h"
#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"

typedef struct opts {
	uint32_t n, k, lookups;
	uint64_t seed;
	double churn_pct;
	double churn_min;
	uint32_t update_s, ping_s;
	uint32_t join_gap_ms;
	bool verbose;
} opts_t;

static double wall_s(void)
{
	return (double)vp_time_mono_ns() / 1e9;
}

/* Copies per registration at the 3 places that should hold it, and elsewhere. */
static void report_placement(const char *scen, sim_t *s)
{
	uint32_t right[4], extra[5];
	sim_placement(s, right, extra);
	printf("%s_copies_in_place 3:%u 2:%u 1:%u 0:%u registrations (of the responsible node and its 2 "
	       "successors); elsewhere 0:%u 1:%u 2:%u 3:%u 4+:%u\n",
	       scen, right[3], right[2], right[1], right[0], extra[0], extra[1], extra[2], extra[3], extra[4]);
}

static double hops_p99(const sim_counters_t *c)
{
	uint64_t acc = 0, goal = (uint64_t)ceil(0.99 * (double)c->hops_n);
	for (int h = 0; h <= 64; h++) {
		acc += c->hop_hist[h];
		if (acc >= goal && c->hops_n)
			return h;
	}
	return 64;
}

static void report_lookups(const char *scen, const sim_counters_t *c, uint32_t n)
{
	double base = 0.5 * log2((double)n);
	double mean = c->hops_n ? (double)c->hops_sum / (double)c->hops_n : 0;
	double rate = c->lookups ? 100.0 * (double)c->lookup_ok / (double)c->lookups : 0;
	printf("%s_lookup_hops_mean %.2f hops (chord-paper 0.5*log2(N) %.2f hops, ratio %.2fx)\n", scen,
	       mean, base, base > 0 ? mean / base : 0);
	printf("%s_lookup_hops_p99 %.0f hops (chord-paper 0.5*log2(N) %.2f hops, ratio %.2fx)\n", scen,
	       hops_p99(c), base, base > 0 ? hops_p99(c) / base : 0);
	printf("%s_lookup_success %.3f %% (lookups %llu, wrong-owner %llu, failed %llu)\n", scen, rate,
	       (unsigned long long)c->lookups, (unsigned long long)c->lookup_wrong,
	       (unsigned long long)c->lookup_failed);
}

static void report_maint(const char *scen, const sim_counters_t *c, double node_minutes)
{
	printf("%s_maintenance_msgs %.2f msgs/node/min (all transmissions %.2f msgs/node/min)\n", scen,
	       node_minutes > 0 ? (double)c->maint_msgs / node_minutes : 0,
	       node_minutes > 0 ? (double)c->msgs / node_minutes : 0);
}

/* Run until every live node has the right successor and predecessor; returns ms taken. */
static int64_t converge(sim_t *s, uint64_t limit_ms)
{
	uint64_t t0 = sim_now(s);
	for (;;) {
		if (sim_ring_errors(s) == 0)
			return (int64_t)(sim_now(s) - t0);
		if (sim_now(s) - t0 >= limit_ms)
			return -1;
		sim_run_until(s, sim_now(s) + 1000);
	}
}

/* Issue `count` lookups spread over `span_ms`, then wait for the stragglers. */
static void lookups_over(sim_t *s, const sim_cfg_t *cfg, uint32_t count, uint64_t span_ms)
{
	uint64_t t0 = sim_now(s);
	for (uint32_t i = 0; i < count; i++) {
		sim_run_until(s, t0 + span_ms * i / (count ? count : 1));
		sim_lookup_random(s);
	}
	sim_run_until(s, sim_now(s) + (uint64_t)cfg->lookup_attempts * cfg->lookup_timeout_ms + 1000);
}

static void usage(FILE *f, const char *argv0)
{
	fprintf(f,
	        "usage: %s [-n nodes] [-s seed] [-k registrations] [-c churn %%/min] [-m churn minutes]\n"
	        "       [-u update s] [-p ping s] [-l lookups] [-g join gap ms] [-v]\n"
	        "\n"
	        "N Chord-RELOAD nodes in the deterministic simulator, every message through the real\n"
	        "codec: bootstrap, steady state, K registrations stored and fetched, churn, a 20%%\n"
	        "mass failure and data survival.  Hops are compared with 1/2 log2(N) (Chord paper).\n"
	        "\n"
	        "  -n  nodes (default 1000, at least 2)   -s  seed (default 1)\n"
	        "  -k  registrations (default 10000)      -l  lookups (default 10000)\n"
	        "  -c  churn, %% of nodes per minute (5)   -m  churn minutes (10)\n"
	        "  -u  update interval, s (600)           -p  ping interval, s (3600)\n"
	        "  -g  join gap, ms (50)                  -v  verbose\n"
	        "  -h, --help  this text\n",
	        argv0);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = { { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	opts_t o = { .n = 1000, .k = 10000, .lookups = 10000, .seed = 1, .churn_pct = 5, .churn_min = 10,
	             .update_s = 600, .ping_s = 3600, .join_gap_ms = 50 };
	sim_cfg_t cfg = sim_cfg_default();
	sim_t *s;
	sim_counters_t c;
	int opt, rc;
	double w0, wall_total;
	int64_t conv;
	uint32_t doomed = 0;

	while ((opt = getopt_long(argc, argv, "n:s:k:c:m:u:p:l:g:vh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'n': o.n = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': o.seed = strtoull(optarg, NULL, 10); break;
		case 'k': o.k = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'c': o.churn_pct = strtod(optarg, NULL); break;
		case 'm': o.churn_min = strtod(optarg, NULL); break;
		case 'u': o.update_s = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': o.ping_s = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': o.lookups = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'g': o.join_gap_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'v': o.verbose = true; break;
		case 'h': usage(stdout, argv[0]); return 0;
		default: usage(stderr, argv[0]); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr, argv[0]);
		return 2;
	}
	if (o.n < 2) {
		fprintf(stderr, "need at least 2 nodes\n");
		return 2;
	}
	vp_log_setup(o.verbose ? VP_LOG_DEBUG : VP_LOG_ERROR, NULL);
	cfg.seed = o.seed;
	cfg.chord.update_interval_ms = (uint64_t)o.update_s * 1000;
	cfg.chord.ping_interval_ms = (uint64_t)o.ping_s * 1000;
	cfg.chord.ring_check_interval_ms = (uint64_t)o.ping_s * 1000;
	/* Slots for the churn joins too. */
	cfg.max_nodes = o.n + (uint32_t)(o.n * o.churn_pct / 100.0 * o.churn_min) + 16;
	rcu_register_thread();
	if ((rc = sim_new(&cfg, &s))) {
		fprintf(stderr, "sim_new: %s\n", vp_strerror(rc));
		return 1;
	}
	printf("# sim_chord n=%u seed=%llu k=%u churn=%.1f%%/min for %.0f min update=%us ping=%us "
	       "latency=%.0fms+lognormal(%.0fms) timeout=%ums x%u\n",
	       o.n, (unsigned long long)o.seed, o.k, o.churn_pct, o.churn_min, o.update_s, o.ping_s,
	       cfg.lat_min_ms, cfg.lat_median_ms, cfg.lookup_timeout_ms, cfg.lookup_attempts);
	w0 = wall_s();

	/* 1. Bootstrap one by one. */
	for (uint32_t i = 0; i < o.n; i++) {
		sim_run_until(s, sim_now(s) + o.join_gap_ms);
		if (sim_spawn(s) < 0) {
			fprintf(stderr, "spawn failed\n");
			return 1;
		}
	}
	conv = converge(s, 3600 * 1000);
	c = *sim_counters(s);
	{
		uint32_t st[4] = { 0 };
		for (uint32_t i = 0; i < sim_nodes(s); i++)
			st[chord_node_state(sim_node(s, i))]++;
		printf("# states init=%u joining=%u joined=%u left=%u\n", st[0], st[1], st[2], st[3]);
	}
	printf("bootstrap_joined %u nodes (target %u nodes, ratio %.3fx)\n", sim_live_joined(s), o.n,
	       (double)sim_live_joined(s) / o.n);
	printf("bootstrap_converge_after_last_join %.1f s\n", conv < 0 ? -1.0 : conv / 1000.0);
	printf("bootstrap_maintenance_per_node %.1f msgs (all maintenance while the ring formed, / N)\n",
	       (double)c.maint_msgs / o.n);

	/* 2. Steady state: a maintenance-only window of two finger-refresh periods
	 * (fingers settle), then lookups. */
	sim_counters_reset(s);
	sim_run_until(s, sim_now(s) + 2ull * o.ping_s * 1000);
	c = *sim_counters(s);
	report_maint("steady", &c, (double)sim_live_joined(s) * 2.0 * o.ping_s / 60.0);
	sim_counters_reset(s);
	lookups_over(s, &cfg, o.lookups, 60 * 1000);
	c = *sim_counters(s);
	report_lookups("steady", &c, sim_live_joined(s));

	/* 3. Store K registrations and fetch them all. */
	sim_counters_reset(s);
	sim_store_regs(s, o.k);
	sim_run_until(s, sim_now(s) + (uint64_t)cfg.lookup_attempts * cfg.lookup_timeout_ms + 1000);
	{
		sim_survival_t sv = sim_check_regs(s);
		printf("store_fetch_ok %.3f %% (%u of %u registrations)\n", 100.0 * sv.ok / (sv.total ? sv.total : 1),
		       sv.ok, sv.total);
	}
	c = *sim_counters(s);
	report_placement("steady", s);

	/* 4. Churn: joins and failures alternate at churn_pct of N per minute. */
	sim_counters_reset(s);
	if (o.churn_min > 0 && o.churn_pct > 0) {
		double per_min = o.n * o.churn_pct / 100.0;
		uint64_t span = (uint64_t)(o.churn_min * 60000.0);
		uint64_t gap = per_min > 0 ? (uint64_t)(60000.0 / per_min) : span;
		uint64_t start = sim_now(s), next_churn = start + gap;
		uint32_t lookups = (uint32_t)(o.churn_min * 600); /* 10 per second */
		bool kill = true;
		double node_min = 0;
		for (uint32_t i = 0; i < lookups; i++) {
			uint64_t at = start + span * i / lookups;
			while (next_churn <= at) {
				sim_run_until(s, next_churn);
				if (kill)
					sim_kill(s, sim_random_live(s));
				else if (sim_spawn(s) < 0)
					break;
				kill = !kill;
				next_churn += gap;
			}
			sim_run_until(s, at);
			sim_lookup_random(s);
			node_min += sim_live(s) * (span / (double)lookups) / 60000.0;
		}
		sim_run_until(s, start + span);
		conv = converge(s, 3600 * 1000);
		sim_run_until(s, sim_now(s) + (uint64_t)cfg.lookup_attempts * cfg.lookup_timeout_ms);
		c = *sim_counters(s);
			report_lookups("churn", &c, sim_live_joined(s));
		report_maint("churn", &c, node_min);
		printf("churn_converge %.1f s (after the last churn event)\n", conv < 0 ? -1.0 : conv / 1000.0);
	}
	if (o.churn_min > 0 && o.churn_pct > 0) {
		sim_survival_t sv = sim_check_regs(s);
		printf("churn_data_survival %.3f %% (%u of %u; lost with a live copy %u; all copies dead %u)\n",
		       100.0 * sv.ok / (sv.total ? sv.total : 1), sv.ok, sv.total, sv.lost_with_holder,
		       sv.lost_no_holder);
	}

	/* 5. Mass failure of 20%. */
	sim_counters_reset(s);
	report_placement("massfail_before", s);
	{
		/* What 0.2^3 means for one run: the spread of the doomed fraction over many kill sets of this ring
		 * (its own RNG stream, so the simulation that follows is the same with or without it). */
		double mean, p5, p95;
		if (sim_doomed_spread(s, sim_live_joined(s) / 5, 1000, o.seed, &mean, &p5, &p95) == 0)
			printf("massfail_model_spread mean %.3f %% over 1000 random kill sets of this ring (model 0.2^3 "
			       "0.800 %%, ratio %.2fx); 90%% of runs lose between %.3f %% and %.3f %%\n",
			       mean, 0.8 / mean, p5, p95);
	}
	{
		uint32_t live = sim_live_joined(s), kills = live / 5;
		for (uint32_t i = 0; i < kills; i++)
			sim_kill(s, sim_random_live(s));
		doomed = sim_regs_without_copy(s);
		conv = converge(s, 3600 * 1000);
		printf("massfail_killed %u nodes (of %u)\n", kills, live);
		printf("massfail_converge %.1f s\n", conv < 0 ? -1.0 : conv / 1000.0);
	}
	{
		sim_survival_t sv = sim_check_regs(s);
		double expect = 0;
		printf("massfail_data_survival %.3f %% (%u of %u; lost with a live copy %u; all 3 copies dead %u, "
		       "of which owner dead %u)\n",
		       100.0 * sv.ok / (sv.total ? sv.total : 1), sv.ok, sv.total, sv.lost_with_holder,
		       sv.lost_no_holder, sv.owner_dead);
		expect = 0.2 * 0.2 * 0.2 * 100.0;
		printf("massfail_loss_all_replicas %.3f %% (independent-failure model 0.2^3 %.3f %%, ratio %.2fx)\n",
		       100.0 * sv.lost_no_holder / (sv.total ? sv.total : 1), expect,
		       sv.total ? (100.0 * sv.lost_no_holder / sv.total) / expect : 0);
		/* The model is an expectation over kill sets; this run's kill set dooms exactly the registrations
		 * with no surviving copy.  Losing more than those is the engine's fault; the rest is sampling. */
		printf("massfail_loss_vs_doomed %u registrations lost (doomed by this kill set: %u, %.3f %%; "
		       "ratio %.2fx)\n",
		       sv.lost_no_holder + sv.lost_with_holder, doomed, 100.0 * doomed / (sv.total ? sv.total : 1),
		       doomed ? (double)(sv.lost_no_holder + sv.lost_with_holder) / doomed : 0);
		sim_refresh_regs(s);
		sim_run_until(s, sim_now(s) + (uint64_t)cfg.lookup_attempts * cfg.lookup_timeout_ms + 1000);
		sv = sim_check_regs(s);
		printf("massfail_after_refresh_survival %.3f %% (%u of %u; unrecoverable = owner dead %u; lost with a "
		       "live copy %u)\n",
		       100.0 * sv.ok / (sv.total ? sv.total : 1), sv.ok, sv.total, sv.owner_dead, sv.lost_with_holder);
	}
	sim_counters_reset(s);
	lookups_over(s, &cfg, o.lookups, 60 * 1000);
	c = *sim_counters(s);
	report_lookups("massfail", &c, sim_live_joined(s));

	wall_total = wall_s() - w0;
	printf("sim_speed %.0f msgs/s (events %llu, wall %.1f s)\n", (double)sim_msgs_total(s) / wall_total,
	       (unsigned long long)sim_events(s), wall_total);
	{
		/* Wall time depends on the machine's load; CPU time does not. */
		double cpu = (double)clock() / CLOCKS_PER_SEC;
		printf("sim_speed_cpu %.0f msgs/cpu-s (msgs %llu, cpu %.1f s)\n",
		       cpu > 0 ? (double)sim_msgs_total(s) / cpu : 0, (unsigned long long)sim_msgs_total(s), cpu);
	}
	printf("sim_codec_errors %llu\n", (unsigned long long)sim_counters(s)->codec_errors);

	sim_free(s);
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	return 0;
}
