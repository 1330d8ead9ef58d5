// Package clusterjoin is the conversation between a hypervisor that runs
// `gallium-net cluster join TOKEN` and a store member that admits it.
//
// The member serves HTTPS on its join address (JoinPort on the management
// IP) with its member certificate and the cluster CA in the chain it sends.
// The joiner has no certificate yet and trusts nothing but its token:
//
//  1. It dials without the usual chain check, and before any byte of a
//     request leaves it checks that the chain holds the CA the token pins
//     (its SHA-256) and that the server's certificate is signed by that CA
//     for the address dialled. A wrong cluster or a man in the middle ends
//     the join here, with nothing sent.
//  2. It asks for a nonce (GET /v1/join/nonce): single use, valid for
//     NonceTTL, so that a recorded request cannot be played again.
//  3. It sends its request (POST /v1/join): the nonce, its hypervisor name,
//     its management IP, a CSR for a key it made itself, and whether it
//     replaces a member of its name (a reinstalled hypervisor). The body is
//     authenticated by the header MACHeader: HMAC-SHA256 of the exact body
//     bytes under the token's secret. The secret itself never crosses the
//     network.
//  4. The member checks the MAC and the nonce, signs the CSR for the names
//     it decides itself (the joiner's name, its management IP and
//     127.0.0.1), then asks its Admitter to make room in the store (etcd's
//     learner), and answers with the CA, the CA's key, the certificate and
//     the initial cluster the joiner's member starts with.
//
// Every member holds the CA's key, as every k3s server does: any member can
// admit the next hypervisor or a replacement, with no special first host
// whose loss would stop the cluster from growing. The key travels once per
// join, inside the TLS session the token's pin verified.
//
// The package is pure net/http and plugin/clusterpki; what admission means
// for the store (etcd's member list, the spec's hypervisors) is the
// Admitter's business, so the protocol is tested without etcd.
package clusterjoin
