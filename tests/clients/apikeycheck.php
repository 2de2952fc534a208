<?php
// Commerce's key validation, as its Magento Services connector calls the gateway: a GET with the
// key in the magento-api-key header, through PHP's curl extension; 2xx means valid, anything else not.
// Usage: KEYTRAIL_GATEWAY=http://127.0.0.1:8080/gateway/apikeycheck MAGENTO_API_KEY=... php apikeycheck.php
// Prints "<status> valid" or "<status> invalid"; exits 0 when valid, 1 when not, 2 when the call failed.

$url = getenv('KEYTRAIL_GATEWAY');
$key = getenv('MAGENTO_API_KEY');
$headers = [];
if ($key !== false && $key !== '') {
    $headers[] = 'magento-api-key: ' . $key;
}
$curl = curl_init($url);
curl_setopt($curl, CURLOPT_RETURNTRANSFER, true);
curl_setopt($curl, CURLOPT_HTTPHEADER, $headers);
curl_setopt($curl, CURLOPT_TIMEOUT, 30);
$body = curl_exec($curl);
if ($body === false) {
    fwrite(STDERR, 'curl failed: ' . curl_error($curl) . "\n");
    exit(2);
}
$status = curl_getinfo($curl, CURLINFO_HTTP_CODE);
curl_close($curl);
$valid = $status >= 200 && $status < 300;
echo $status . ($valid ? ' valid' : ' invalid') . "\n";
exit($valid ? 0 : 1);
