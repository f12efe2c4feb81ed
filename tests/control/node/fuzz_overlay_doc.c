/* libFuzzer target: the configuration document reader (od_parse, od_verify) and the PKCS#10 reader
 * (ca_csr_parse, ca_csr_check) on the same bytes. */
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "control/node/ca.h"
#include "control/node/overlay_doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[OD_WHY_MAX];
	od_doc_t *doc = NULL;
	X509_REQ *req = NULL;
	if (od_parse((const char *)data, size, NULL, &doc, why) == 0) {
		od_verify(doc, why);
		od_check_usable(doc, why);
		od_doc_free(doc);
	}
	if (ca_csr_parse(data, size, &req) == 0) {
		ca_csr_check(req, CA_KEYS_ANY);
		X509_REQ_free(req);
	}
	return 0;
}
