/*
 * pvp/method.h - PVP methods "a" and "b": selector, SRP username and password,
 * time rounding and the entropy estimate (docs/protocol.md §5.3-§5.6).
 *
 * Both sides derive the SRP credentials from their own call record; they agree
 * when the records describe the same call within the rounding tolerances.
 * Pure functions: no allocation, no state.
 */
#ifndef VP_PVP_METHOD_H
#define VP_PVP_METHOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pvp/vcr.h"

#define PVP_G_START 60          /* s: start-time granularity, tolerance ±30 s per try */
#define PVP_G_DUR 4             /* s: duration granularity, tolerance ±2 s (jitter of two events) */
#define PVP_G_DUR_MS (PVP_G_DUR * 1000) /* the same in ms: the duration is rounded in ms (§5.3) */
#define PVP_BUCKET_S 3600       /* s: selector bucket (public) */
#define PVP_SEL_ITER 4096       /* PBKDF2 iterations: ≈2 ms per selector, see §5.4 */
#define PVP_SEL_LEN 16
#define PVP_USER_MAX 96         /* SRP username buffer */
#define PVP_PASS_MAX 96         /* SRP password buffer */
#define PVP_MIN_DURATION_S 1

/*! \brief Method code points; priorities per seed 001 §B.6 ("a" 100, "b" 0). */
typedef enum pvp_method {
	PVP_METHOD_B = 0,
	PVP_METHOD_A = 1,
} pvp_method_t;

#define PVP_MBIT(m) (1u << (m))
#define PVP_METHODS_ALL (PVP_MBIT(PVP_METHOD_A) | PVP_MBIT(PVP_METHOD_B))

/*! \brief Method letter ('a', 'b'). */
char pvp_method_letter(pvp_method_t m);

/*! \brief Priority of \p m (higher is tried first). */
int pvp_method_priority(pvp_method_t m);

/*! \brief Decoded SRP username. */
typedef struct pvp_user {
	pvp_method_t method;
	uint32_t bucket;        /*!< floor(start_s / 3600) on the client */
	uint32_t ps;            /*!< start phase: start_s mod 60 */
	uint32_t pd;            /*!< duration phase in ms: d_ms mod 4000 (0..3999) */
	uint32_t idx;           /*!< candidate index (0 = most recent) */
	uint8_t sel[PVP_SEL_LEN];
} pvp_user_t;

/*! \brief Selector: PBKDF2-HMAC-SHA256(called, "vipr-pvp-sel-v1" ‖ bucket, 4096, 16). */
int pvp_selector(const char *called, uint32_t bucket, uint8_t sel[PVP_SEL_LEN]);

/*! \brief Format \p u as "v1.<m>.<B>.<ps>.<pd>.<i>.<hex>". */
int pvp_user_format(const pvp_user_t *u, char out[PVP_USER_MAX]);

/*!
 * \brief Parse a username; VP_EMALFORMED unless it is exactly the documented form
 * (ps < 60, pd < 4000, canonical decimals, 32 lower-case hex digits).
 */
int pvp_user_parse(const char *s, pvp_user_t *u);

/*! \brief Rounded value q(t) = floor((t - p + G/2) / G) (floor division). */
int64_t pvp_round_q(int64_t t, uint32_t p, uint32_t g);

/*!
 * \brief Client credentials for record \p r (originating), method \p m,
 * candidate \p idx and start shift \p shift (0, -1, +1 … buckets of 60 s).
 * VP_EINVAL if the method needs a caller-ID the record lacks or the call is too short.
 */
int pvp_client_creds(const pvp_vcr_t *r, pvp_method_t m, uint32_t idx, int shift,
                     char user[PVP_USER_MAX], char pass[PVP_PASS_MAX]);

/*! \brief The password the server expects for username \p u if \p r is the call. */
int pvp_server_password(const pvp_vcr_t *r, const pvp_user_t *u, char pass[PVP_PASS_MAX]);

/*! \brief Is record \p r usable by the server for method \p m? */
bool pvp_method_applies(const pvp_vcr_t *r, pvp_method_t m);

/*! \brief Entropy model parameters (docs/protocol.md §5.6). */
typedef struct pvp_entropy_conf {
	double caller_bits;     /*!< value of the caller-ID in method "a"; 0 = default 4 */
	double mean_duration_s; /*!< μ of the exponential duration model; 0 = default 180 */
} pvp_entropy_conf_t;

/*! \brief Estimated entropy of validating \p r with \p m, in 1/100 bit. \p c may be NULL. */
uint32_t pvp_entropy_cbits(const pvp_vcr_t *r, pvp_method_t m, const pvp_entropy_conf_t *c);

#endif
