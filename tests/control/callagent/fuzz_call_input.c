/* libFuzzer target: any bytes as a response on a fork of a two-route call (control/callagent), then a hang-up. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/callagent/callagent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool sink(void *ctx, size_t fork, const char *msg, size_t len)
{
	(void)ctx;
	(void)fork;
	return msg && len > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vca_plan_t p;
	vca_call_t *c = NULL;
	vca_hooks_t h = { .send = sink };
	vca_call_conf_t cc = { .from_uri = "sip:a@b.example", .contact_uri = "sip:a@127.0.0.1",
	                       .via_host = "127.0.0.1", .transport = "TCP", .call_id = "fuzzcall" };
	memset(&p, 0, sizeof(p));
	p.n = 2;
	for (size_t i = 0; i < 2; i++) {
		snprintf(p.routes[i].number, sizeof(p.routes[i].number), "+14085551234");
		snprintf(p.routes[i].uri, sizeof(p.routes[i].uri), "sip:+14085551234@192.0.2.%zu:5060", i + 1);
		snprintf(p.routes[i].ticket, sizeof(p.routes[i].ticket), "dA");
	}
	if (vca_call_start(&cc, &p, &h, &c) != 0)
		abort();
	(void)vca_call_input(c, size & 1, (const char *)data, size);
	(void)vca_call_hangup(c);
	vca_call_fork_failed(c, 0);
	vca_call_fork_failed(c, 1);
	if (vca_call_outcome(c, NULL, NULL) == VCA_O_PENDING)
		abort(); /* every fork is final: the call must be decided */
	vca_call_free(c);
	return 0;
}
