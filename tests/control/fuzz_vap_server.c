/*
 * libFuzzer target: the VAP server's request handling behind authentication.
 *
 * Each input is a sequence of chunks `u8 method, u8 flags, u16 len, len bytes`;
 * every chunk becomes one request signed with a provisioned agent's key (so
 * the fuzzer reaches Publish, UploadVCR, Subscribe... rather than stopping at
 * 401), or with flag 0x80 is sent as raw stream bytes.  The server runs in this
 * thread over loopback; every answer it sends must itself decode.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/net.h"
#include "bench/support/vap_memstore.h"
#include "control/vap/vap_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static vap_server_t *srv;
static vap_memstore_t *ms;
static uint8_t key[VAP_KEY_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vap_server_conf_t conf;
	vap_hooks_t hooks;
	(void)argc;
	(void)argv;
	vp_log_setup(VP_LOG_ERROR, NULL);
	vap_server_conf_default(&conf);
	conf.max_msg = 4096;
	conf.req_burst = 50;
	conf.req_rate = 1e6;
	conf.store_queue_max = 100000;
	if (vap_memstore_new(&ms))
		abort();
	vap_memstore_hooks(ms, &hooks);
	if (vap_server_create(&conf, &hooks, &srv) || vap_server_add_agent(srv, "fuzz", "pw") ||
	    vap_key_derive("fuzz", "vipr", "pw", key))
		abort();
	vap_memstore_attach(ms, srv, false);
	return 0;
}

/* Read and check whatever answers are ready; returns false once the server closed. */
static bool drain(int fd, uint8_t *buf, size_t *have, size_t cap, char *nonce)
{
	for (;;) {
		ssize_t r = recv(fd, buf + *have, cap - *have, MSG_DONTWAIT);
		if (r == 0)
			return false;
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		*have += (size_t)r;
		for (;;) {
			long fl = vap_frame_len(buf, *have);
			vap_msg_t m;
			vap_attr_t a;
			if (fl < 0)
				abort();        /* the server framed something wrong */
			if (fl == 0 || (size_t)fl > *have)
				break;
			if (vap_msg_parse(buf, (size_t)fl, &m))
				abort();        /* the server sent a message that does not decode */
			if (nonce && vap_msg_find(&m, VAP_ATTR_NONCE, &a) == 0)
				vap_attr_str(&a, nonce, VAP_MAX_NONCE + 1);
			memmove(buf, buf + fl, *have - (size_t)fl);
			*have -= (size_t)fl;
		}
		if (*have == cap)
			abort();
	}
}

static void pump(int fd, uint8_t *buf, size_t *have, size_t cap, char *nonce, bool *open_)
{
	for (int i = 0; i < 4; i++) {
		vap_server_run_once(srv, 0);
		if (*open_)
			*open_ = drain(fd, buf, have, cap, nonce);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t methods[] = { VAP_REGISTER, VAP_PUBLISH, VAP_UPLOAD_VCR, VAP_SUBSCRIBE,
	                                    VAP_NOTIFY, VAP_UNREGISTER, VAP_KEEPALIVE, 0x0FF };
	uint8_t *in = malloc(65536), *out = malloc(8192);
	size_t have = 0, off = 0;
	char nonce[VAP_MAX_NONCE + 1] = "";
	bool open_ = true;
	int fd;
	vap_enc_t e;
	long n;

	if (vp_net_connect_tcp("127.0.0.1", vap_server_port(srv), 5000, VP_NET_NUMERIC | VP_NET_NONBLOCK, &fd))
		abort();
	/* The challenge, for this connection's nonce. */
	vap_enc_begin(&e, out, 8192, vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), (const uint8_t *)"fuzz-chall-0");
	vap_enc_str(&e, VAP_ATTR_USERNAME, "fuzz");
	n = vap_enc_finish(&e, NULL, 0, false);
	if (send(fd, out, (size_t)n, MSG_NOSIGNAL) != n)
		abort();
	for (int i = 0; i < 50 && !nonce[0] && open_; i++)
		pump(fd, in, &have, 65536, nonce, &open_);
	while (open_ && off + 4 <= size) {
		uint8_t sel = data[off], flags = data[off + 1];
		size_t len = (size_t)data[off + 2] << 8 | data[off + 3];
		uint8_t tid[VAP_TID_LEN] = { 0 };
		const uint8_t *body = data + off + 4;
		if (len > size - off - 4)
			len = size - off - 4;
		off += 4 + len;
		if (flags & 0x80) {
			n = (long)len;
			memcpy(out, body, len > 8192 ? 8192 : len);
			n = len > 8192 ? 8192 : (long)len;
		} else {
			uint16_t cls = (flags & 1) ? VAP_CLASS_INDICATION : VAP_CLASS_REQUEST;
			memcpy(tid, &off, sizeof(off) < VAP_TID_LEN ? sizeof(off) : VAP_TID_LEN);
			vap_enc_begin(&e, out, 8192, vap_type(methods[sel & 7], cls), tid);
			if (!(flags & 2)) {
				vap_enc_str(&e, VAP_ATTR_USERNAME, "fuzz");
				vap_enc_str(&e, VAP_ATTR_REALM, "vipr");
				vap_enc_str(&e, VAP_ATTR_NONCE, nonce);
			}
			/* The fuzz bytes are the attribute area, padded to 4. */
			vp_wr_bytes(&e.wr, body, len & ~(size_t)3);
			n = vap_enc_finish(&e, (flags & 4) ? NULL : key, VAP_KEY_LEN, flags & 8);
			if (n < 0)
				continue;
		}
		for (long sent = 0; sent < n && open_;) {
			ssize_t w = send(fd, out + sent, (size_t)(n - sent), MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				open_ = false;
			if (w > 0)
				sent += w;
			pump(fd, in, &have, 65536, NULL, &open_);
		}
		pump(fd, in, &have, 65536, NULL, &open_);
	}
	close(fd);
	for (int i = 0; i < 4; i++)
		vap_server_run_once(srv, 0);
	vap_memstore_clear(ms);     /* keep memory flat across millions of inputs */
	free(in);
	free(out);
	return 0;
}
