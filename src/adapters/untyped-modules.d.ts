// The Apache hash packages ship no type declarations.
declare module "apache-md5" {
  export default function apacheMd5(password: string, salt?: string): string;
}
declare module "apache-crypt" {
  export default function apacheCrypt(password: string, salt?: string): string;
}
